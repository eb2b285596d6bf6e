/**
 * One trust domain's X.509 authorities: what verifies the X509-SVIDs of that trust domain, and
 * nothing else. Read from PEM or from the SPIFFE bundle format (SPIFFE Trust Domain and Bundle,
 * section 4: a JWK Set whose `x509-svid` keys carry one CA certificate each in `x5c`), and
 * written back to both.
 */
import { readFile } from 'node:fs/promises';
import type { ChangeListener, Unsubscribe } from './change-listeners.js';
import { InvalidBundleError } from './errors.js';
import { decodePemCertificates, encodePemCertificates } from './pem.js';
import { isJsonObject, JsonNumber, type JsonValue, parseStrictJson } from './strict-json.js';
import { TrustDomain } from './trust-domain.js';
import { type ParsedCertificate, parseCertificate } from './x509-certificate.js';

/**
 * Where verification finds the bundle of a trust domain. `generation` increases whenever any
 * answer would change; `getX509Bundles()` lists every bundle (TLS needs their union as `ca`).
 */
export interface X509BundleSource {
  readonly generation: number;
  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined;
  getX509Bundles(): readonly X509Bundle[];
  onChange?(listener: ChangeListener): Unsubscribe;
}

/** `spiffe_sequence` is an unsigned 64-bit integer (Trust Domain and Bundle 4.1.1). */
export const MAX_SEQUENCE = (1n << 64n) - 1n;
/** Bundle documents larger than this are refused unparsed. */
export const MAX_BUNDLE_JSON_BYTES = 16 * 1024 * 1024;

export interface X509BundleOptions {
  /** `spiffe_sequence`: 0 .. 2^64-1. */
  sequence?: bigint | number;
  /** `spiffe_refresh_hint`, in whole seconds. */
  refreshHintSeconds?: number;
}

const X509_SVID_USE = 'x509-svid';
// JWK members that carry the public key, per key type (RFC 7518 section 6).
const KEY_MEMBERS: Readonly<Record<string, readonly string[]>> = {
  EC: ['crv', 'x', 'y'],
  RSA: ['n', 'e'],
  OKP: ['crv', 'x'],
};
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function toTrustDomain(td: TrustDomain | string): TrustDomain {
  return typeof td === 'string' ? TrustDomain.parse(td) : td;
}

function checkSequence(seq: bigint | number): bigint {
  if (typeof seq === 'number' && !Number.isSafeInteger(seq)) {
    throw new InvalidBundleError('spiffe_sequence must be an integer');
  }
  const b = BigInt(seq);
  if (b < 0n || b > MAX_SEQUENCE)
    throw new InvalidBundleError('spiffe_sequence is out of the 64-bit unsigned range');
  return b;
}

function checkRefreshHint(s: number): number {
  if (!Number.isSafeInteger(s) || s < 0) {
    throw new InvalidBundleError('spiffe_refresh_hint must be a non-negative integer number of seconds');
  }
  return s;
}

/** The public key of a certificate as JWK members (kty plus the key's own members). */
function jwkOf(cert: ParsedCertificate): Record<string, string> {
  try {
    return cert.publicKey.export({ format: 'jwk' }) as Record<string, string>;
  } catch (err) {
    throw new InvalidBundleError(`authority key cannot be written as a JWK: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

export class X509Bundle implements X509BundleSource {
  readonly trustDomain: TrustDomain;
  /** The X.509 authorities (CA certificates), without duplicates, in the order given. */
  readonly authorities: readonly ParsedCertificate[];
  readonly sequence: bigint | undefined;
  readonly refreshHintSeconds: number | undefined;
  /** A bundle is an immutable value, and its own source. */
  readonly generation = 0;
  readonly #self: readonly X509Bundle[];

  private constructor(td: TrustDomain, authorities: ParsedCertificate[], options: X509BundleOptions) {
    this.trustDomain = td;
    const seen = new Set<string>();
    this.authorities = Object.freeze(
      authorities.filter((a) => {
        if (seen.has(a.key)) return false;
        seen.add(a.key);
        return true;
      }),
    );
    this.sequence = options.sequence === undefined ? undefined : checkSequence(options.sequence);
    this.refreshHintSeconds =
      options.refreshHintSeconds === undefined ? undefined : checkRefreshHint(options.refreshHintSeconds);
    this.#self = Object.freeze([this]);
    Object.freeze(this);
  }

  /** From certificates (DER or parsed). Garbage DER throws `InvalidBundleError`. */
  static fromAuthorities(
    trustDomain: TrustDomain | string,
    authorities: Iterable<Uint8Array | ParsedCertificate>,
    options: X509BundleOptions = {},
  ): X509Bundle {
    const parsed: ParsedCertificate[] = [];
    for (const a of authorities) {
      try {
        parsed.push(parseCertificate(a));
      } catch (err) {
        throw new InvalidBundleError(`cannot parse authority certificate: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    return new X509Bundle(toTrustDomain(trustDomain), parsed, options);
  }

  /** From PEM: every `CERTIFICATE` block is an authority; at least one is required. */
  static fromPem(
    trustDomain: TrustDomain | string,
    pem: string | Uint8Array,
    options?: X509BundleOptions,
  ): X509Bundle {
    let ders: Uint8Array[];
    try {
      ders = decodePemCertificates(pem);
    } catch (err) {
      throw new InvalidBundleError(`cannot parse PEM bundle: ${(err as Error).message}`, { cause: err });
    }
    return X509Bundle.fromAuthorities(trustDomain, ders, options);
  }

  /**
   * From the SPIFFE bundle format (a JWK Set). Keys whose `use` is not `x509-svid` (such as
   * `jwt-svid`) or whose `kty` is unknown are ignored, as the standard requires; an `x509-svid`
   * key must carry exactly one certificate in `x5c`, and its key members must match that
   * certificate. Anything else throws `InvalidBundleError`.
   */
  static fromJwks(trustDomain: TrustDomain | string, json: string | Uint8Array): X509Bundle {
    const td = toTrustDomain(trustDomain);
    if (json.length > MAX_BUNDLE_JSON_BYTES) throw new InvalidBundleError('bundle document is too large');
    let doc: JsonValue;
    try {
      const text =
        typeof json === 'string'
          ? json
          : new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(json);
      doc = parseStrictJson(text);
    } catch (err) {
      throw new InvalidBundleError(`unable to parse JWKS: ${(err as Error).message}`, { cause: err });
    }
    if (!isJsonObject(doc)) throw new InvalidBundleError('bundle document must be a JSON object');
    const options: X509BundleOptions = {};
    const seq = doc.spiffe_sequence;
    if (seq !== undefined) {
      if (!(seq instanceof JsonNumber) || !/^(?:0|[1-9][0-9]*)$/.test(seq.raw)) {
        throw new InvalidBundleError('spiffe_sequence must be a non-negative integer');
      }
      options.sequence = checkSequence(BigInt(seq.raw));
    }
    const hint = doc.spiffe_refresh_hint;
    if (hint !== undefined) {
      if (!(hint instanceof JsonNumber) || !/^(?:0|[1-9][0-9]*)$/.test(hint.raw)) {
        throw new InvalidBundleError('spiffe_refresh_hint must be a non-negative integer number of seconds');
      }
      options.refreshHintSeconds = checkRefreshHint(Number(hint.raw));
    }
    const keys = doc.keys;
    // Trust Domain and Bundle 4.1.3: "The parameter keys MUST be present."
    if (keys === undefined) throw new InvalidBundleError('no keys found');
    if (!Array.isArray(keys)) throw new InvalidBundleError('keys must be an array');
    const authorities: ParsedCertificate[] = [];
    keys.forEach((key, i) => {
      if (!isJsonObject(key)) throw new InvalidBundleError(`key ${i} is not a JSON object`);
      // 4.2.2: "The use parameter MUST be set"; unknown values mean "ignore this key".
      if (typeof key.use !== 'string') throw new InvalidBundleError(`key ${i} has no "use"`);
      if (key.use !== X509_SVID_USE) return;
      // 4.2.1: "The kty parameter MUST be set"; unknown key types are ignored.
      if (typeof key.kty !== 'string') throw new InvalidBundleError(`key ${i} has no "kty"`);
      const members = KEY_MEMBERS[key.kty];
      if (members === undefined) return;
      const x5c = key.x5c;
      const count = Array.isArray(x5c) ? x5c.length : 0;
      if (!Array.isArray(x5c) || count !== 1) {
        throw new InvalidBundleError(`expected a single certificate in x509-svid entry ${i}; got ${count}`);
      }
      const b64 = x5c[0];
      if (typeof b64 !== 'string' || !BASE64.test(b64) || b64.length === 0) {
        throw new InvalidBundleError(`x509-svid entry ${i}: x5c must hold standard base64 DER`);
      }
      let cert: ParsedCertificate;
      try {
        cert = parseCertificate(new Uint8Array(Buffer.from(b64, 'base64')));
      } catch (err) {
        throw new InvalidBundleError(`x509-svid entry ${i}: ${(err as Error).message}`, { cause: err });
      }
      const jwk = jwkOf(cert);
      if (jwk.kty !== key.kty || members.some((m) => key[m] !== jwk[m])) {
        throw new InvalidBundleError(`x509-svid entry ${i}: key does not match its x5c certificate`);
      }
      authorities.push(cert);
    });
    return new X509Bundle(td, authorities, options);
  }

  /** Reads a bundle file: SPIFFE bundle JSON when it starts with `{`, PEM otherwise. */
  static async load(trustDomain: TrustDomain | string, file: string): Promise<X509Bundle> {
    return X509Bundle.parse(trustDomain, await readFile(file));
  }

  /** SPIFFE bundle JSON when the text starts with `{` (after white space), PEM otherwise. */
  static parse(trustDomain: TrustDomain | string, data: string | Uint8Array): X509Bundle {
    const head =
      typeof data === 'string' ? data.slice(0, 256) : Buffer.from(data.subarray(0, 256)).toString('latin1');
    return head.trimStart().startsWith('{')
      ? X509Bundle.fromJwks(trustDomain, data)
      : X509Bundle.fromPem(trustDomain, data, {});
  }

  /** The SPIFFE bundle format: `{"keys":[...],"spiffe_sequence":N,"spiffe_refresh_hint":N}`. */
  toJwks(options: { indent?: number } = {}): string {
    const keys = this.authorities.map((a) => {
      const jwk = jwkOf(a);
      const entry: Record<string, unknown> = { kty: jwk.kty };
      for (const m of KEY_MEMBERS[jwk.kty ?? ''] ?? []) entry[m] = jwk[m];
      entry.use = X509_SVID_USE;
      entry.x5c = [Buffer.from(a.der).toString('base64')];
      return entry;
    });
    // The sequence is written from its bigint text: JSON.stringify cannot write a 64-bit integer.
    const placeholder = '\u0000spiffe_sequence\u0000';
    const doc: Record<string, unknown> = { keys };
    if (this.sequence !== undefined) doc.spiffe_sequence = placeholder;
    if (this.refreshHintSeconds !== undefined) doc.spiffe_refresh_hint = this.refreshHintSeconds;
    const text = JSON.stringify(doc, null, options.indent);
    return this.sequence === undefined
      ? text
      : text.replace(JSON.stringify(placeholder), this.sequence.toString());
  }

  /** Every authority as PEM. */
  toPem(): string {
    return encodePemCertificates(this.authorities.map((a) => a.der));
  }

  /** Whether `cert` (same DER) is one of the authorities. */
  hasAuthority(cert: Uint8Array | ParsedCertificate): boolean {
    const key = parseCertificate(cert).key;
    return this.authorities.some((a) => a.key === key);
  }

  /** The same authorities with another sequence / refresh hint. */
  with(options: X509BundleOptions): X509Bundle {
    return new X509Bundle(this.trustDomain, [...this.authorities], {
      sequence: this.sequence,
      refreshHintSeconds: this.refreshHintSeconds,
      ...options,
    });
  }

  /** Same trust domain, same authorities (in any order), same sequence and refresh hint. */
  equals(other: X509Bundle): boolean {
    if (!this.trustDomain.equals(other.trustDomain)) return false;
    if (this.sequence !== other.sequence || this.refreshHintSeconds !== other.refreshHintSeconds)
      return false;
    if (this.authorities.length !== other.authorities.length) return false;
    const keys = new Set(this.authorities.map((a) => a.key));
    return other.authorities.every((a) => keys.has(a.key));
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.trustDomain.equals(trustDomain) ? this : undefined;
  }

  getX509Bundles(): readonly X509Bundle[] {
    return this.#self;
  }
}
