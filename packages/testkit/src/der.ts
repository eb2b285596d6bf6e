/**
 * Just enough DER (ITU-T X.690) to assemble and take apart X.509 certificates. `@peculiar/x509`
 * builds certificates too, but through a generic ASN.1 object model that costs ~3 ms per leaf;
 * concatenating pre-encoded parts costs ~0.05 ms, which is what lets tests mint hundreds of SVIDs.
 */

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  UTC_TIME: 0x17,
  GENERALIZED_TIME: 0x18,
  SEQUENCE: 0x30,
  /** [0] EXPLICIT, constructed: the TBSCertificate version wrapper. */
  CONTEXT_0: 0xa0,
  /** [3] EXPLICIT, constructed: the TBSCertificate extensions wrapper. */
  CONTEXT_3: 0xa3,
  /** GeneralName dNSName [2] IMPLICIT IA5String (RFC 5280 4.2.1.6). */
  SAN_DNS: 0x82,
  /** GeneralName uniformResourceIdentifier [6] IMPLICIT IA5String (RFC 5280 4.2.1.6). */
  SAN_URI: 0x86,
} as const;

/** One TLV with definite length (X.690 8.1.3: short form below 128, long form above). */
export function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const c of contents) length += c.byteLength;
  const lengthBytes: number[] = [];
  if (length < 0x80) {
    lengthBytes.push(length);
  } else {
    for (let n = length; n > 0; n = Math.floor(n / 256)) lengthBytes.unshift(n & 0xff);
    lengthBytes.unshift(0x80 | lengthBytes.length);
  }
  const out = new Uint8Array(1 + lengthBytes.length + length);
  out[0] = tag;
  out.set(lengthBytes, 1);
  let offset = 1 + lengthBytes.length;
  for (const c of contents) {
    out.set(c, offset);
    offset += c.byteLength;
  }
  return out;
}

export const sequence = (...contents: Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, ...contents);

/** A non-negative INTEGER from big-endian magnitude bytes (X.690 8.3: minimal, with a 0x00 pad if the top bit is set). */
export function unsignedInteger(magnitude: Uint8Array): Uint8Array {
  let start = 0;
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++;
  const trimmed = magnitude.subarray(start);
  const pad = (trimmed[0] ?? 0) & 0x80 ? new Uint8Array([0]) : new Uint8Array(0);
  return tlv(TAG.INTEGER, pad, trimmed);
}

/** BIT STRING with no unused bits: how signatures and keys are carried. */
export const bitString = (bytes: Uint8Array): Uint8Array => tlv(TAG.BIT_STRING, new Uint8Array([0]), bytes);

const ascii = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'latin1'));

/**
 * RFC 5280 4.1.2.5: UTCTime for years 1950-2049, GeneralizedTime from 2050; both in UTC with seconds
 * and no fraction. Milliseconds are dropped, so callers report the truncated instant.
 */
export function x509Time(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  const p2 = (n: number) => String(n).padStart(2, '0');
  const rest =
    p2(date.getUTCMonth() + 1) +
    p2(date.getUTCDate()) +
    p2(date.getUTCHours()) +
    p2(date.getUTCMinutes()) +
    p2(date.getUTCSeconds()) +
    'Z';
  return year >= 1950 && year < 2050
    ? tlv(TAG.UTC_TIME, ascii(p2(year % 100) + rest))
    : tlv(TAG.GENERALIZED_TIME, ascii(String(year).padStart(4, '0') + rest));
}

/** An Extension (RFC 5280 4.1): extnID, critical (DEFAULT FALSE, so omitted when false), extnValue. */
export function extension(oidDer: Uint8Array, critical: boolean, valueDer: Uint8Array): Uint8Array {
  const criticalDer = critical ? new Uint8Array([TAG.BOOLEAN, 1, 0xff]) : new Uint8Array(0);
  return sequence(oidDer, criticalDer, tlv(TAG.OCTET_STRING, valueDer));
}

/** A GeneralName carrying an IA5String (URI or DNS name). Non-ASCII input is written as UTF-8 bytes, unchecked. */
export const ia5GeneralName = (tag: number, value: string): Uint8Array =>
  tlv(tag, new Uint8Array(Buffer.from(value, 'utf8')));

export interface Tlv {
  tag: number;
  /** Offset of the tag byte. */
  start: number;
  /** Offset of the first content byte. */
  contentStart: number;
  /** Offset just past the contents. */
  end: number;
}

export function readTlv(der: Uint8Array, offset: number): Tlv {
  const tag = der[offset];
  const first = der[offset + 1];
  if (tag === undefined || first === undefined) throw new RangeError('truncated DER');
  let length = first;
  let contentStart = offset + 2;
  if (first & 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 4) throw new RangeError('unsupported DER length');
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + (der[contentStart + i] ?? 0);
    contentStart += n;
  }
  const end = contentStart + length;
  if (end > der.byteLength) throw new RangeError('truncated DER');
  return { tag, start: offset, contentStart, end };
}

/**
 * The subject Name of a certificate, byte for byte as encoded. A certificate it issues must carry
 * exactly these bytes as its issuer for name chaining (RFC 5280 6.1.3 (a)(4)) to hold with every
 * verifier, including for CAs OpenSSL made with UTF8String names.
 */
export function subjectNameDer(certDer: Uint8Array): Uint8Array {
  const cert = readTlv(certDer, 0);
  const tbs = readTlv(certDer, cert.contentStart);
  let field = readTlv(certDer, tbs.contentStart);
  if (field.tag === TAG.CONTEXT_0) field = readTlv(certDer, field.end); // skip version
  // serialNumber, signature, issuer, validity, then subject.
  for (let i = 0; i < 4; i++) field = readTlv(certDer, field.end);
  return certDer.slice(field.start, field.end);
}
