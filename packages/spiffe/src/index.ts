/**
 * @hbone/spiffe: SPIFFE identities for Node. IDs and trust domains, X509-SVIDs, trust bundles
 * and federation, verification of a peer against the bundle of its own trust domain,
 * authorisers, rotating credential sources, and Node TLS options that enforce all of it.
 */
export * from './authorizer.js';
export * from './bundle-set.js';
export type { ChangeListener, Unsubscribe } from './change-listeners.js';
export * from './errors.js';
export * from './pem.js';
export * from './private-key.js';
export * from './source.js';
export * from './spiffe-id.js';
export * from './tls.js';
export * from './trust-domain.js';
export * from './verify.js';
export * from './x509-bundle.js';
export * from './x509-certificate.js';
export * from './x509-svid.js';
