/**
 * PEM files on disk, named as the `hbone` CLI and OpenSSL-based scripts expect them. Private keys
 * are written 0600: harmless for test keys, and it keeps tools that check permissions quiet.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { MintedSvid } from './minted-svid.js';

export interface CaFilePaths {
  caPath: string;
  caKeyPath: string;
  bundlePath: string;
  /** Only for a CA with an intermediate. */
  intermediatePath?: string;
  intermediateKeyPath?: string;
}

export interface SvidFilePaths {
  certPath: string;
  keyPath: string;
}

export interface CaFileContents {
  rootPem: string;
  rootKeyPem: string;
  bundlePem: string;
  intermediatePem?: string;
  intermediateKeyPem?: string;
}

export const CA_FILE = 'ca.pem';
export const CA_KEY_FILE = 'ca-key.pem';
export const BUNDLE_FILE = 'bundle.pem';
export const INTERMEDIATE_FILE = 'intermediate.pem';
export const INTERMEDIATE_KEY_FILE = 'intermediate-key.pem';
export const CERT_FILE = 'cert.pem';
export const KEY_FILE = 'key.pem';

const KEY_MODE = 0o600;

export async function writeCaFiles(dir: string, c: CaFileContents): Promise<CaFilePaths> {
  await mkdir(dir, { recursive: true });
  const paths: CaFilePaths = {
    caPath: join(dir, CA_FILE),
    caKeyPath: join(dir, CA_KEY_FILE),
    bundlePath: join(dir, BUNDLE_FILE),
  };
  await Promise.all([
    writeFile(paths.caPath, c.rootPem),
    writeFile(paths.caKeyPath, c.rootKeyPem, { mode: KEY_MODE }),
    writeFile(paths.bundlePath, c.bundlePem),
  ]);
  if (c.intermediatePem !== undefined && c.intermediateKeyPem !== undefined) {
    paths.intermediatePath = join(dir, INTERMEDIATE_FILE);
    paths.intermediateKeyPath = join(dir, INTERMEDIATE_KEY_FILE);
    await Promise.all([
      writeFile(paths.intermediatePath, c.intermediatePem),
      writeFile(paths.intermediateKeyPath, c.intermediateKeyPem, { mode: KEY_MODE }),
    ]);
  }
  return paths;
}

/** Reads what `writeCaFiles` wrote; the intermediate files are optional. */
export async function readCaFiles(dir: string): Promise<Omit<CaFileContents, 'bundlePem'>> {
  const [rootPem, rootKeyPem, intermediatePem, intermediateKeyPem] = await Promise.all([
    readFile(join(dir, CA_FILE), 'utf8'),
    readFile(join(dir, CA_KEY_FILE), 'utf8'),
    readOptional(join(dir, INTERMEDIATE_FILE)),
    readOptional(join(dir, INTERMEDIATE_KEY_FILE)),
  ]);
  return {
    rootPem,
    rootKeyPem,
    ...(intermediatePem !== undefined ? { intermediatePem } : {}),
    ...(intermediateKeyPem !== undefined ? { intermediateKeyPem } : {}),
  };
}

async function readOptional(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Writes `cert.pem` (leaf, then intermediates) and `key.pem` (PKCS#8) into `dir`. */
export async function writeSvidFiles(svid: MintedSvid, dir: string): Promise<SvidFilePaths> {
  await mkdir(dir, { recursive: true });
  const paths = { certPath: join(dir, CERT_FILE), keyPath: join(dir, KEY_FILE) };
  await Promise.all([
    writeFile(paths.certPath, svid.certChainPem),
    writeFile(paths.keyPath, svid.keyPem, { mode: KEY_MODE }),
  ]);
  return paths;
}
