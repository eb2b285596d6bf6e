/**
 * The one entry to `@peculiar/x509`. Its dependency injection (tsyringe) throws at load time unless a
 * Reflect metadata polyfill is installed first (the library's README: "Reflect Polyfill Required"),
 * and ES modules evaluate imports in order: importing x509 only through this file guarantees the
 * polyfill is in place whichever testkit module loads first.
 */
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

export { x509 };
