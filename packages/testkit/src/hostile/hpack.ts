/**
 * HPACK (RFC 7541), as much as a hostile peer needs:
 * - the encoder writes every field as a literal without indexing, with a new name, so it keeps no
 *   dynamic table and can write anything: uppercase names, pseudo-headers in any place, bytes
 *   outside ASCII, empty names (a conforming encoder would refuse most of these);
 * - the decoder reads everything a real peer (nghttp2) sends: indexed fields, incremental
 *   indexing with its dynamic table, table size updates, Huffman-coded strings.
 */
import { huffmanDecode, huffmanEncode } from './huffman.js';

/** A header field: name and value, as strings (latin1: one byte per char) or raw bytes. */
export type HeaderField = readonly [name: string | Uint8Array, value: string | Uint8Array];

// RFC 7541 Appendix A.
const STATIC_TABLE: ReadonlyArray<readonly [string, string]> = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ['accept-language', ''],
  ['accept-ranges', ''],
  ['accept', ''],
  ['access-control-allow-origin', ''],
  ['age', ''],
  ['allow', ''],
  ['authorization', ''],
  ['cache-control', ''],
  ['content-disposition', ''],
  ['content-encoding', ''],
  ['content-language', ''],
  ['content-length', ''],
  ['content-location', ''],
  ['content-range', ''],
  ['content-type', ''],
  ['cookie', ''],
  ['date', ''],
  ['etag', ''],
  ['expect', ''],
  ['expires', ''],
  ['from', ''],
  ['host', ''],
  ['if-match', ''],
  ['if-modified-since', ''],
  ['if-none-match', ''],
  ['if-range', ''],
  ['if-unmodified-since', ''],
  ['last-modified', ''],
  ['link', ''],
  ['location', ''],
  ['max-forwards', ''],
  ['proxy-authenticate', ''],
  ['proxy-authorization', ''],
  ['range', ''],
  ['referer', ''],
  ['refresh', ''],
  ['retry-after', ''],
  ['server', ''],
  ['set-cookie', ''],
  ['strict-transport-security', ''],
  ['transfer-encoding', ''],
  ['user-agent', ''],
  ['vary', ''],
  ['via', ''],
  ['www-authenticate', ''],
];

/** Largest integer we decode: bounds the work a hostile encoder can cause. */
const MAX_INTEGER = 2 ** 31 - 1;

function bytesOf(s: string | Uint8Array): Buffer {
  return typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s);
}

/** Appends an HPACK integer with an N-bit prefix (RFC 7541 5.1); `firstByteBits` fills the rest. */
export function encodeInteger(value: number, prefixBits: number, firstByteBits = 0): number[] {
  if (!Number.isInteger(value) || value < 0) throw new RangeError(`HPACK integer ${value}`);
  const max = (1 << prefixBits) - 1;
  if (value < max) return [firstByteBits | value];
  const out = [firstByteBits | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest % 128) + 128);
    rest = Math.floor(rest / 128);
  }
  out.push(rest);
  return out;
}

function encodeString(bytes: Buffer, huffman: boolean): Buffer {
  const body = huffman ? huffmanEncode(bytes) : bytes;
  return Buffer.concat([Buffer.from(encodeInteger(body.length, 7, huffman ? 0x80 : 0)), body]);
}

export interface EncodeOptions {
  /** Huffman-code the strings. Default false (plain octets). */
  huffman?: boolean;
  /** 'never' writes "never indexed" literals (0x10) instead of "without indexing" (0x00). */
  indexing?: 'without' | 'never';
}

/**
 * Encodes a header block of literals without indexing and with new names: no dynamic table, so
 * blocks can be split, repeated or dropped without desynchronising the peer's decoder.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[], opts: EncodeOptions = {}): Buffer {
  const parts: Buffer[] = [];
  const first = opts.indexing === 'never' ? 0x10 : 0x00;
  for (const [name, value] of fields) {
    parts.push(Buffer.from([first]));
    parts.push(encodeString(bytesOf(name), opts.huffman ?? false));
    parts.push(encodeString(bytesOf(value), opts.huffman ?? false));
  }
  return Buffer.concat(parts);
}

/** A dynamic table size update (RFC 7541 6.3), to put at the start of a block. */
export function encodeTableSizeUpdate(size: number): Buffer {
  return Buffer.from(encodeInteger(size, 5, 0x20));
}

/** A decoded field: name and value as latin1 strings (bytes kept one per char). */
export type DecodedField = [name: string, value: string];

export class HpackError extends Error {
  override name = 'HpackError';
}

/**
 * Decoder with a dynamic table (RFC 7541 2.3). Decode every header block of a connection, in
 * order, with one instance: the table carries state from block to block.
 */
export class HpackDecoder {
  #table: Array<[string, string]> = [];
  #size = 0;
  #maxSize: number;
  readonly #limit: number;

  /** `maxTableSize`: the SETTINGS_HEADER_TABLE_SIZE we announced (default 4096). */
  constructor(maxTableSize = 4096) {
    this.#maxSize = maxTableSize;
    this.#limit = maxTableSize;
  }

  /** Entries in the dynamic table (newest first), for tests. */
  get dynamicTable(): ReadonlyArray<readonly [string, string]> {
    return this.#table;
  }

  decode(block: Uint8Array): DecodedField[] {
    const buf = Buffer.from(block.buffer, block.byteOffset, block.length);
    const out: DecodedField[] = [];
    let pos = 0;
    const integer = (prefixBits: number): number => {
      if (pos >= buf.length) throw new HpackError('truncated integer');
      const max = (1 << prefixBits) - 1;
      let value = buf[pos++]! & max;
      if (value < max) return value;
      let shift = 1;
      for (;;) {
        if (pos >= buf.length) throw new HpackError('truncated integer');
        const b = buf[pos++]!;
        value += (b & 0x7f) * shift;
        if (value > MAX_INTEGER) throw new HpackError('integer overflow');
        if ((b & 0x80) === 0) return value;
        shift *= 128;
      }
    };
    const string = (): string => {
      if (pos >= buf.length) throw new HpackError('truncated string');
      const huffman = (buf[pos]! & 0x80) !== 0;
      const length = integer(7);
      if (pos + length > buf.length) throw new HpackError('string longer than the block');
      const raw = buf.subarray(pos, pos + length);
      pos += length;
      try {
        return (huffman ? huffmanDecode(raw) : raw).toString('latin1');
      } catch (err) {
        throw new HpackError(`bad Huffman string: ${(err as Error).message}`);
      }
    };
    let fieldsSeen = false;
    while (pos < buf.length) {
      const b = buf[pos]!;
      if (b & 0x80) {
        out.push(this.#lookup(integer(7)));
        fieldsSeen = true;
      } else if (b & 0x40) {
        const index = integer(6);
        const name = index === 0 ? string() : this.#lookup(index)[0];
        const value = string();
        out.push([name, value]);
        this.#insert(name, value);
        fieldsSeen = true;
      } else if (b & 0x20) {
        if (fieldsSeen) throw new HpackError('table size update after a header field');
        const size = integer(5);
        if (size > this.#limit) throw new HpackError(`table size ${size} above the limit ${this.#limit}`);
        this.#maxSize = size;
        this.#evict(0);
      } else {
        // 0000xxxx without indexing, 0001xxxx never indexed: both 4-bit prefixes.
        const index = integer(4);
        const name = index === 0 ? string() : this.#lookup(index)[0];
        out.push([name, string()]);
        fieldsSeen = true;
      }
    }
    return out;
  }

  #lookup(index: number): [string, string] {
    if (index === 0) throw new HpackError('index 0');
    if (index <= STATIC_TABLE.length) {
      const [n, v] = STATIC_TABLE[index - 1]!;
      return [n, v];
    }
    const entry = this.#table[index - STATIC_TABLE.length - 1];
    if (!entry) throw new HpackError(`index ${index} beyond the tables`);
    return [entry[0], entry[1]];
  }

  #insert(name: string, value: string): void {
    const entrySize = 32 + name.length + value.length;
    if (entrySize > this.#maxSize) {
      this.#table = [];
      this.#size = 0;
      return;
    }
    this.#evict(entrySize);
    this.#table.unshift([name, value]);
    this.#size += entrySize;
  }

  #evict(room: number): void {
    while (this.#size + room > this.#maxSize && this.#table.length > 0) {
      const [n, v] = this.#table.pop()!;
      this.#size -= 32 + n.length + v.length;
    }
  }
}

/**
 * Raw HPACK representations for peers that abuse the dynamic table (an "HPACK bomb" inserts one
 * large field and then references it many times at one byte each).
 */
export function hpackIndexed(index: number): Buffer {
  return Buffer.from(encodeInteger(index, 7, 0x80));
}

/** A literal with incremental indexing and a new name (RFC 7541 6.2.1): the peer adds it to its table. */
export function hpackLiteralWithIndexing(name: string | Uint8Array, value: string | Uint8Array): Buffer {
  return Buffer.concat([
    Buffer.from([0x40]),
    encodeString(bytesOf(name), false),
    encodeString(bytesOf(value), false),
  ]);
}
