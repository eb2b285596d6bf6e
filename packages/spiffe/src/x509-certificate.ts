/**
 * One X.509 certificate, parsed once into the facts SPIFFE verification needs. OpenSSL (through
 * `node:crypto`) checks the DER and verifies signatures; `@peculiar/x509` reads the extensions
 * from the DER (never from Node's SAN text, which is made for humans and can be ambiguous).
 *
 * Parsing costs a millisecond or so, and a mesh meets the same few certificates over and over,
 * so `parseCertificate` keeps a bounded LRU keyed by the exact DER bytes: a repeated peer costs a
 * map lookup. Parsed certificates are immutable, which is what makes sharing them safe.
 */
// @peculiar/x509 2.x resolves its algorithms through tsyringe, which needs the Reflect metadata
// API; this import must stay before @peculiar/x509's.
import 'reflect-metadata';
import { createHash, type KeyObject, X509Certificate as NodeX509Certificate } from 'node:crypto';
import {
  BasicConstraintsExtension,
  KeyUsagesExtension,
  X509Certificate as PeculiarCertificate,
  SubjectAlternativeNameExtension,
} from '@peculiar/x509';
import { InvalidCertificateError } from './errors.js';
import { encodePem } from './pem.js';

/** Key usage bits (RFC 5280 4.2.1.3), as flags. */
export const KeyUsage = Object.freeze({
  digitalSignature: 1,
  nonRepudiation: 2,
  keyEncipherment: 4,
  dataEncipherment: 8,
  keyAgreement: 16,
  keyCertSign: 32,
  cRLSign: 64,
  encipherOnly: 128,
  decipherOnly: 256,
});

/** Extension OIDs this package understands; any other extension marked critical is refused. */
export const KNOWN_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.15': 'keyUsage',
  '2.5.29.17': 'subjectAltName',
  '2.5.29.19': 'basicConstraints',
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.30': 'nameConstraints',
  '2.5.29.37': 'extKeyUsage',
});

/** Certificates larger than this are refused unparsed (real SVIDs are under 2 KiB). */
export const MAX_CERTIFICATE_BYTES = 64 * 1024;

/** DER TLV reader: returns [content start, content end, next TLV start]. DER only (definite lengths). */
function tlv(buf: Uint8Array, at: number, end: number): [number, number, number] {
  if (at + 2 > end) throw new RangeError('truncated DER');
  let len = buf[at + 1]!;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4 || start + n > end) throw new RangeError('bad DER length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[start + i]!;
    start += n;
  }
  if (start + len > end) throw new RangeError('truncated DER');
  return [start, start + len, start + len];
}

/** The raw issuer, subject and SubjectPublicKeyInfo of a certificate's TBS. */
function rawNames(der: Uint8Array): { issuer: Uint8Array; subject: Uint8Array; spki: Uint8Array } {
  const [certStart, certEnd] = tlv(der, 0, der.length);
  const [tbsStart, tbsEnd] = tlv(der, certStart, certEnd);
  let p = tbsStart;
  if (der[p] === 0xa0) p = tlv(der, p, tbsEnd)[2]; // [0] version
  p = tlv(der, p, tbsEnd)[2]; // serialNumber
  p = tlv(der, p, tbsEnd)[2]; // signature AlgorithmIdentifier
  const issuerAt = p;
  p = tlv(der, p, tbsEnd)[2];
  const issuer = der.subarray(issuerAt, p);
  p = tlv(der, p, tbsEnd)[2]; // validity
  const subjectAt = p;
  p = tlv(der, p, tbsEnd)[2];
  const subject = der.subarray(subjectAt, p);
  const spkiAt = p;
  p = tlv(der, p, tbsEnd)[2];
  return { issuer, subject, spki: der.subarray(spkiAt, p) };
}

/** One name of a name constraint (RFC 5280 4.2.1.10); `other` is any form this package does not check. */
export interface NameConstraint {
  readonly type: 'uri' | 'dns' | 'other';
  readonly value: string;
}

export interface NameConstraints {
  readonly permitted: readonly NameConstraint[];
  readonly excluded: readonly NameConstraint[];
}

/** Parses the nameConstraints extension value (DER): `[0]` permitted and `[1]` excluded subtrees. */
function parseNameConstraints(value: Uint8Array): NameConstraints {
  const [start, end] = tlv(value, 0, value.length);
  if (value[0] !== 0x30) throw new RangeError('nameConstraints is not a SEQUENCE');
  const permitted: NameConstraint[] = [];
  const excluded: NameConstraint[] = [];
  for (let p = start; p < end; ) {
    const tag = value[p];
    const [s, e, next] = tlv(value, p, end);
    if (tag !== 0xa0 && tag !== 0xa1) throw new RangeError('bad nameConstraints subtrees');
    const into = tag === 0xa0 ? permitted : excluded;
    for (let q = s; q < e; ) {
      // GeneralSubtree ::= SEQUENCE { base GeneralName, minimum [0] DEFAULT 0, maximum [1] OPTIONAL }
      const [gs, ge, gnext] = tlv(value, q, e);
      if (value[q] !== 0x30) throw new RangeError('bad GeneralSubtree');
      const baseTag = value[gs];
      const [bs, be, bnext] = tlv(value, gs, ge);
      const text = Buffer.from(value.subarray(bs, be)).toString('latin1');
      // RFC 5280: minimum MUST be zero and maximum absent; anything else is a form we do not check.
      const bounded = bnext !== ge;
      const type = bounded ? 'other' : baseTag === 0x86 ? 'uri' : baseTag === 0x82 ? 'dns' : 'other';
      into.push({ type, value: text });
      q = gnext;
    }
    p = next;
  }
  return { permitted: Object.freeze(permitted), excluded: Object.freeze(excluded) };
}

function latin1(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * The facts of one certificate. Build with `parseCertificate` (cached); every field is read at
 * parse time, so a `ParsedCertificate` never throws later.
 */
export class ParsedCertificate {
  /** The exact DER bytes (a private copy; do not mutate: parsed certificates are shared). */
  readonly der: Uint8Array;
  /** Serial number, lowercase hex. */
  readonly serialNumber: string;
  /** Subject and issuer as text, for messages only (never compared). */
  readonly subject: string;
  readonly issuer: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** basicConstraints cA (false when the extension is absent). */
  readonly isCa: boolean;
  /** basicConstraints pathLenConstraint, when set. */
  readonly pathLen: number | undefined;
  /** Key usage flags (`KeyUsage`), or `undefined` when the extension is absent. */
  readonly keyUsage: number | undefined;
  /** URI SANs, in certificate order, exactly as encoded. */
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  /** OIDs of the extensions marked critical. */
  readonly criticalExtensions: readonly string[];
  /** OIDs of critical extensions not in `KNOWN_EXTENSIONS`: a verifier must refuse them. */
  readonly unknownCriticalExtensions: readonly string[];
  /** The nameConstraints extension, when present. */
  readonly nameConstraints: NameConstraints | undefined;
  /** DER SubjectPublicKeyInfo. */
  readonly spki: Uint8Array;
  /** Subject and issuer names are byte-identical (RFC 5280 "self-issued"). */
  readonly selfIssued: boolean;
  /** Cache key: the DER as a latin1 string. */
  readonly key: string;
  /** @internal raw subject / issuer names as latin1 strings, for issuer matching. */
  readonly subjectKey: string;
  readonly issuerKey: string;
  readonly #node: NodeX509Certificate;
  readonly #publicKey: KeyObject;
  #fingerprint: string | undefined;
  #pem: string | undefined;
  readonly #signedBy = new WeakMap<ParsedCertificate, boolean>();

  /** @internal use `parseCertificate`. */
  constructor(der: Uint8Array, key: string) {
    this.der = der;
    this.key = key;
    let node: NodeX509Certificate;
    try {
      node = new NodeX509Certificate(der);
    } catch (err) {
      throw new InvalidCertificateError(`certificate does not parse: ${describe(err)}`, { cause: err });
    }
    this.#node = node;
    try {
      // Read now, so a certificate with an unusable key fails here and never later.
      this.#publicKey = node.publicKey;
    } catch (err) {
      throw new InvalidCertificateError(`certificate public key does not parse: ${describe(err)}`, {
        cause: err,
      });
    }
    let pc: PeculiarCertificate;
    let names: ReturnType<typeof rawNames>;
    const uris: string[] = [];
    const dnsNames: string[] = [];
    const critical: string[] = [];
    let isCa = false;
    let pathLen: number | undefined;
    let keyUsage: number | undefined;
    let nameConstraints: NameConstraints | undefined;
    try {
      names = rawNames(der);
      pc = new PeculiarCertificate(der);
      const seen = new Set<string>();
      for (const ext of pc.extensions) {
        // RFC 5280 4.2: "A certificate MUST NOT include more than one instance of a particular
        // extension." Two SAN extensions would let a certificate show different names to
        // different readers, so duplicates are refused outright.
        if (seen.has(ext.type)) throw new Error(`duplicate extension ${ext.type}`);
        seen.add(ext.type);
        if (ext.critical) critical.push(ext.type);
        if (ext instanceof SubjectAlternativeNameExtension) {
          for (const n of ext.names.items) {
            if (n.type === 'url') uris.push(n.value);
            else if (n.type === 'dns') dnsNames.push(n.value);
          }
        } else if (ext instanceof BasicConstraintsExtension) {
          isCa = ext.ca;
          pathLen = ext.pathLength;
        } else if (ext instanceof KeyUsagesExtension) {
          keyUsage = ext.usages;
        } else if (ext.type === '2.5.29.30') {
          nameConstraints = parseNameConstraints(new Uint8Array(ext.value));
        }
      }
      this.serialNumber = pc.serialNumber.toLowerCase();
      this.notBefore = pc.notBefore;
      this.notAfter = pc.notAfter;
    } catch (err) {
      if (err instanceof InvalidCertificateError) throw err;
      throw new InvalidCertificateError(`certificate does not parse: ${describe(err)}`, { cause: err });
    }
    // Node reports an empty name as undefined (Istio leaves the leaf subject empty).
    this.subject = (node.subject ?? '').replaceAll('\n', ', ');
    this.issuer = (node.issuer ?? '').replaceAll('\n', ', ');
    this.isCa = isCa;
    this.pathLen = pathLen;
    this.keyUsage = keyUsage;
    this.uris = Object.freeze(uris);
    this.dnsNames = Object.freeze(dnsNames);
    this.criticalExtensions = Object.freeze(critical);
    this.unknownCriticalExtensions = Object.freeze(critical.filter((oid) => !(oid in KNOWN_EXTENSIONS)));
    this.nameConstraints = nameConstraints;
    this.spki = names.spki;
    this.subjectKey = latin1(names.subject);
    this.issuerKey = latin1(names.issuer);
    this.selfIssued = this.subjectKey === this.issuerKey;
  }

  /** True when the key usage extension is present and has every bit of `flags`. */
  hasKeyUsage(flags: number): boolean {
    return this.keyUsage !== undefined && (this.keyUsage & flags) === flags;
  }

  /** The subject public key. */
  get publicKey(): KeyObject {
    return this.#publicKey;
  }

  /** SHA-256 of the DER, lowercase hex. */
  get fingerprint256(): string {
    this.#fingerprint ??= createHash('sha256').update(this.der).digest('hex');
    return this.#fingerprint;
  }

  /** The certificate as one PEM block. */
  get pem(): string {
    this.#pem ??= encodePem('CERTIFICATE', this.der);
    return this.#pem;
  }

  /** `node:crypto`'s view of the same certificate. */
  toNodeCertificate(): NodeX509Certificate {
    return this.#node;
  }

  /** Whether `issuer`'s subject is this certificate's issuer name (byte-exact). */
  namedIssuer(issuer: ParsedCertificate): boolean {
    return this.issuerKey === issuer.subjectKey;
  }

  /**
   * Whether this certificate's signature verifies with `issuer`'s public key (OpenSSL's
   * X509_verify, which also requires the outer and TBS signature algorithms to agree). The answer
   * is a pure function of the two DERs, so it is remembered.
   */
  isSignedBy(issuer: ParsedCertificate): boolean {
    let ok = this.#signedBy.get(issuer);
    if (ok === undefined) {
      try {
        ok = this.#node.verify(issuer.publicKey);
      } catch {
        ok = false;
      }
      this.#signedBy.set(issuer, ok);
    }
    return ok;
  }

  /** Whether the two certificates have the same DER. */
  equals(other: ParsedCertificate): boolean {
    return this === other || this.key === other.key;
  }
}

/** A small LRU: a Map in insertion order, refreshed on hit. */
class Lru<V> {
  readonly #map = new Map<string, V>();
  max: number;
  constructor(max: number) {
    this.max = max;
  }
  get(key: string): V | undefined {
    const v = this.#map.get(key);
    if (v !== undefined) {
      this.#map.delete(key);
      this.#map.set(key, v);
    }
    return v;
  }
  set(key: string, v: V): void {
    this.#map.delete(key);
    this.#map.set(key, v);
    this.trim();
  }
  trim(): void {
    while (this.#map.size > this.max) {
      const oldest = this.#map.keys().next().value as string;
      this.#map.delete(oldest);
    }
  }
  get size(): number {
    return this.#map.size;
  }
  clear(): void {
    this.#map.clear();
  }
}

const cache = new Lru<ParsedCertificate>(1024);

/** The parse cache: bounded, keyed by the exact DER bytes. */
export const certificateCache = Object.freeze({
  get size(): number {
    return cache.size;
  },
  get max(): number {
    return cache.max;
  },
  /** Changes the bound (at least 1); shrinking evicts the least recently used. */
  setMax(max: number): void {
    if (!Number.isInteger(max) || max < 1)
      throw new RangeError('certificate cache size must be a positive integer');
    cache.max = max;
    cache.trim();
  },
  clear(): void {
    cache.clear();
  },
});

/**
 * Parses one DER certificate (or returns the cached parse of the same bytes). Anything that is
 * not a well-formed certificate, including random bytes, throws `InvalidCertificateError`.
 */
export function parseCertificate(der: Uint8Array | ParsedCertificate): ParsedCertificate {
  if (der instanceof ParsedCertificate) return der;
  if (!(der instanceof Uint8Array)) throw new InvalidCertificateError('certificate must be DER bytes');
  if (der.length === 0) throw new InvalidCertificateError('certificate is empty');
  if (der.length > MAX_CERTIFICATE_BYTES) {
    throw new InvalidCertificateError(`certificate exceeds ${MAX_CERTIFICATE_BYTES} bytes`);
  }
  const key = latin1(der);
  const hit = cache.get(key);
  if (hit !== undefined) return hit;
  const parsed = new ParsedCertificate(new Uint8Array(der), key);
  cache.set(key, parsed);
  return parsed;
}
