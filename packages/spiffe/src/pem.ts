/**
 * PEM (RFC 7468): `-----BEGIN <label>-----`, base64 of DER, `-----END <label>-----`. Decoding is
 * strict about what is inside a block (canonical base64, no headers, matching END line) and
 * lenient about what is between blocks (OpenSSL writes `Bag Attributes` and comments there).
 * Every failure is an `InvalidPemError`; the scanner is linear in the input, so hostile text
 * cannot make it hang.
 */
import { InvalidPemError } from './errors.js';

/** One decoded PEM block. */
export interface PemBlock {
  /** The label between `BEGIN ` and `-----`, e.g. `CERTIFICATE`, `EC PRIVATE KEY`. */
  readonly label: string;
  readonly der: Uint8Array;
}

/** Inputs larger than this are refused before scanning (a trust bundle is kilobytes). */
export const MAX_PEM_BYTES = 16 * 1024 * 1024;

const BEGIN = '-----BEGIN ';
const DASHES = '-----';
// RFC 7468 section 3: labels are printable ASCII without '-', single spaces between words.
const LABEL = /^[\x21-\x2c\x2e-\x7e]+(?: [\x21-\x2c\x2e-\x7e]+)*$/;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

function toText(input: string | Uint8Array): string {
  if (typeof input === 'string') return input;
  return Buffer.from(input.buffer, input.byteOffset, input.byteLength).toString('latin1');
}

function decodeBase64Strict(body: string, label: string): Uint8Array {
  const compact = body.replace(/[ \t\r\n]+/g, '');
  if (compact.length === 0) throw new InvalidPemError(`PEM block "${label}" is empty`);
  if (compact.length % 4 !== 0 || !BASE64.test(compact)) {
    throw new InvalidPemError(`PEM block "${label}" has invalid base64`);
  }
  const bytes = Buffer.from(compact, 'base64');
  // Node's decoder ignores stray padding bits; a canonical round trip catches them.
  if (bytes.toString('base64') !== compact)
    throw new InvalidPemError(`PEM block "${label}" has invalid base64`);
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * Decodes every PEM block of `input`, in order. With `labels`, blocks with other labels are
 * skipped (a file may hold a certificate chain and a key). Throws `InvalidPemError` when no
 * (wanted) block is found, or any block is truncated, has headers or has bad base64.
 */
export function decodePem(input: string | Uint8Array, labels?: readonly string[]): PemBlock[] {
  if (input.length > MAX_PEM_BYTES) throw new InvalidPemError(`PEM input exceeds ${MAX_PEM_BYTES} bytes`);
  const text = toText(input);
  const blocks: PemBlock[] = [];
  let pos = 0;
  for (;;) {
    const begin = text.indexOf(BEGIN, pos);
    if (begin === -1) break;
    const labelStart = begin + BEGIN.length;
    const labelEnd = text.indexOf(DASHES, labelStart);
    const lineEnd = text.indexOf('\n', labelStart);
    if (labelEnd === -1 || (lineEnd !== -1 && lineEnd < labelEnd)) {
      throw new InvalidPemError('PEM BEGIN line is truncated');
    }
    const label = text.slice(labelStart, labelEnd);
    if (!LABEL.test(label)) throw new InvalidPemError('PEM BEGIN line has an invalid label');
    const bodyStart = labelEnd + DASHES.length;
    const endLine = `-----END ${label}-----`;
    const end = text.indexOf(endLine, bodyStart);
    if (end === -1) throw new InvalidPemError(`PEM block "${label}" is truncated: no END line`);
    const body = text.slice(bodyStart, end);
    if (body.includes(DASHES)) throw new InvalidPemError(`PEM block "${label}" is truncated: no END line`);
    if (body.includes(':')) {
      throw new InvalidPemError(`PEM block "${label}" has headers (encrypted PEM is not supported)`);
    }
    pos = end + endLine.length;
    if (labels !== undefined && !labels.includes(label)) continue;
    blocks.push({ label, der: decodeBase64Strict(body, label) });
  }
  if (blocks.length === 0) {
    throw new InvalidPemError(
      labels === undefined ? 'no PEM block found' : `no PEM block found with label ${labels.join(' or ')}`,
    );
  }
  return blocks;
}

/** The DER of every `CERTIFICATE` block (other blocks are skipped). */
export function decodePemCertificates(input: string | Uint8Array): Uint8Array[] {
  return decodePem(input, ['CERTIFICATE']).map((b) => b.der);
}

/** Encodes DER as one PEM block, base64 wrapped at 64 columns, as OpenSSL writes it. */
export function encodePem(label: string, der: Uint8Array): string {
  if (!LABEL.test(label)) throw new InvalidPemError('invalid PEM label');
  const b64 = Buffer.from(der.buffer, der.byteOffset, der.byteLength).toString('base64');
  let out = `-----BEGIN ${label}-----\n`;
  for (let i = 0; i < b64.length; i += 64) out += `${b64.slice(i, i + 64)}\n`;
  return `${out}-----END ${label}-----\n`;
}

/** Concatenated `CERTIFICATE` blocks, in order. */
export function encodePemCertificates(ders: readonly Uint8Array[]): string {
  return ders.map((d) => encodePem('CERTIFICATE', d)).join('');
}
