/**
 * An X509-SVID we hold: a leaf certificate, the intermediates that chain it towards the trust
 * domain's authorities, and the leaf's private key. The X509-SVID standard's rules are checked
 * on load, so an `X509Svid` is always presentable; messages follow go-spiffe's.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { ChangeListener, Unsubscribe } from './change-listeners.js';
import {
  InvalidCertificateError,
  InvalidPemError,
  InvalidPrivateKeyError,
  InvalidSvidError,
} from './errors.js';
import { decodePemCertificates, encodePemCertificates } from './pem.js';
import { type PrivateKeyType, parsePrivateKey, privateKeyType } from './private-key.js';
import { SpiffeId } from './spiffe-id.js';
import { KeyUsage, type ParsedCertificate, parseCertificate } from './x509-certificate.js';

/**
 * Where the current X509-SVID comes from. `generation` increases whenever `getX509Svid()` would
 * return a different SVID, so callers can key caches and connection pools on it.
 */
export interface X509SvidSource {
  readonly generation: number;
  getX509Svid(): X509Svid;
  onChange?(listener: ChangeListener): Unsubscribe;
}

/** Chains (leaf + intermediates) longer than this are refused, so a peer cannot make us do unbounded work. */
export const MAX_CHAIN_LENGTH = 16;

/**
 * The SPIFFE ID of a leaf X509-SVID, after the leaf rules of the X509-SVID standard (sections 2,
 * 3.1, 4.1, 4.3, 5.2): exactly one URI SAN holding a valid SPIFFE ID with a non-root path, cA
 * false, keyUsage with digitalSignature and without keyCertSign or cRLSign.
 * Throws `InvalidSvidError`.
 */
export function leafSvidId(leaf: ParsedCertificate): SpiffeId {
  if (leaf.uris.length === 0) throw new InvalidSvidError('leaf certificate contains no URI SAN');
  if (leaf.uris.length > 1) throw new InvalidSvidError('leaf certificate contains more than one URI SAN');
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(leaf.uris[0]!);
  } catch (err) {
    throw new InvalidSvidError(
      `leaf certificate URI SAN is not a valid SPIFFE ID: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  if (id.path === '') throw new InvalidSvidError('leaf certificate SPIFFE ID must have a non-root path');
  if (leaf.isCa) throw new InvalidSvidError('leaf certificate must not have CA flag set to true');
  if (!leaf.hasKeyUsage(KeyUsage.digitalSignature)) {
    throw new InvalidSvidError("leaf certificate must have 'digitalSignature' set as key usage");
  }
  if (leaf.hasKeyUsage(KeyUsage.keyCertSign)) {
    throw new InvalidSvidError("leaf certificate must not have 'keyCertSign' set as key usage");
  }
  if (leaf.hasKeyUsage(KeyUsage.cRLSign)) {
    throw new InvalidSvidError("leaf certificate must not have 'cRLSign' set as key usage");
  }
  return id;
}

/** X509-SVID 3.2 / 4.1 / 4.3: a signing certificate has cA true and keyCertSign. */
export function checkSigningCertificate(cert: ParsedCertificate, role: string): void {
  if (!cert.isCa) throw new InvalidSvidError(`${role} certificate must have CA flag set to true`);
  if (!cert.hasKeyUsage(KeyUsage.keyCertSign)) {
    throw new InvalidSvidError(`${role} certificate must have 'keyCertSign' set as key usage`);
  }
}

function parseChain(chain: readonly (Uint8Array | ParsedCertificate)[]): ParsedCertificate[] {
  if (chain.length === 0) throw new InvalidSvidError('no certificates found');
  if (chain.length > MAX_CHAIN_LENGTH) {
    throw new InvalidSvidError(`certificate chain longer than ${MAX_CHAIN_LENGTH} certificates`);
  }
  return chain.map((c) => parseCertificate(c));
}

function wrap(err: unknown, what: string): never {
  if (err instanceof InvalidPemError || err instanceof InvalidCertificateError) {
    throw new InvalidSvidError(`cannot parse ${what}: ${err.message}`, { cause: err });
  }
  throw err;
}

export class X509Svid implements X509SvidSource {
  readonly id: SpiffeId;
  readonly leaf: ParsedCertificate;
  /** Certificates after the leaf, as they will be sent to peers (never the root). */
  readonly intermediates: readonly ParsedCertificate[];
  readonly privateKey: KeyObject;
  readonly keyType: PrivateKeyType;
  /** An `X509Svid` is its own (never changing) source. */
  readonly generation = 0;
  #certChainPem: string | undefined;
  #privateKeyPem: string | undefined;

  private constructor(certs: ParsedCertificate[], privateKey: KeyObject) {
    const leaf = certs[0]!;
    this.id = leafSvidId(leaf);
    certs.slice(1).forEach((c, i) => {
      checkSigningCertificate(c, `intermediate ${i + 1}`);
    });
    this.keyType = privateKeyType(privateKey);
    let matches = false;
    try {
      matches = createPublicKey(privateKey).equals(leaf.publicKey);
    } catch {
      matches = false;
    }
    if (!matches) throw new InvalidPrivateKeyError('leaf certificate does not match private key');
    this.leaf = leaf;
    this.intermediates = Object.freeze(certs.slice(1));
    this.privateKey = privateKey;
    Object.freeze(this);
  }

  /**
   * From PEM: `certChainPem` holds the leaf first, then intermediates (other blocks are skipped,
   * so a combined cert+key file works); `keyPem` holds one private key (PKCS#8, SEC1 or PKCS#1).
   */
  static parse(certChainPem: string | Uint8Array, keyPem: string | Uint8Array): X509Svid {
    let ders: Uint8Array[];
    try {
      ders = decodePemCertificates(certChainPem);
    } catch (err) {
      wrap(err, 'PEM encoded certificate');
    }
    return X509Svid.fromDer(ders, parsePrivateKey(keyPem));
  }

  /** From DER: certificates (leaf first) and a private key (DER in any supported encoding, or a KeyObject). */
  static fromDer(chain: readonly (Uint8Array | ParsedCertificate)[], key: Uint8Array | KeyObject): X509Svid {
    let certs: ParsedCertificate[];
    try {
      certs = parseChain(chain);
    } catch (err) {
      wrap(err, 'DER encoded certificate');
    }
    const privateKey = key instanceof Uint8Array ? parsePrivateKey(key) : key;
    if (privateKey.type !== 'private') throw new InvalidPrivateKeyError('expected a private key');
    return new X509Svid(certs, privateKey);
  }

  /** Reads PEM files (they may be the same file). */
  static async load(certFile: string, keyFile: string): Promise<X509Svid> {
    const [cert, key] = await Promise.all([readFile(certFile), readFile(keyFile)]);
    return X509Svid.parse(cert, key);
  }

  /** Leaf first, then intermediates. */
  get certificates(): readonly ParsedCertificate[] {
    return [this.leaf, ...this.intermediates];
  }

  /** DER of the leaf and intermediates, leaf first. */
  chainDer(): Uint8Array[] {
    return this.certificates.map((c) => c.der);
  }

  /** The earliest notAfter of the leaf and intermediates: when this SVID stops being usable. */
  get expiresAt(): Date {
    let t = this.leaf.notAfter.getTime();
    for (const c of this.intermediates) t = Math.min(t, c.notAfter.getTime());
    return new Date(t);
  }

  /** Leaf then intermediates, as PEM. */
  get certChainPem(): string {
    // Cached on first use: TLS contexts are rebuilt from it on every rotation.
    if (this.#certChainPem === undefined) this.#certChainPem = encodePemCertificates(this.chainDer());
    return this.#certChainPem;
  }

  /** The private key as PKCS#8 PEM. */
  get privateKeyPem(): string {
    if (this.#privateKeyPem === undefined) {
      this.#privateKeyPem = this.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    }
    return this.#privateKeyPem;
  }

  getX509Svid(): X509Svid {
    return this;
  }
}
