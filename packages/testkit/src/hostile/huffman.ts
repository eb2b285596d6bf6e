/**
 * The HPACK Huffman code (RFC 7541 Appendix B). It is canonical: codes of one length are
 * consecutive and ordered by symbol, so the bit lengths alone define it. Symbol 256 is EOS.
 */

// Bit length of the code of each symbol 0..256 (RFC 7541 Appendix B, "len in bits").
// biome-ignore format: 16 symbols a row, so a symbol's length is easy to find
const CODE_LENGTHS: readonly number[] = [
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,  // 0..15
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,  // 16..31
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,  // 32..47
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,  // 48..63
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,  // 64..79
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,  // 80..95
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,  // 96..111
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,  // 112..127
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,  // 128..143
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,  // 144..159
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,  // 160..175
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,  // 176..191
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,  // 192..207
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,  // 208..223
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,  // 224..239
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,  // 240..255
  30,  // 256..256
];

const EOS = 256;

interface CanonicalTable {
  /** Code of each symbol (at most 30 bits: fits a JS int). */
  readonly codes: Uint32Array;
  /** Symbols ordered by (length, symbol). */
  readonly sorted: Uint16Array;
  /** Per length: the first code, the index of its first symbol in `sorted`, and how many. */
  readonly firstCode: Int32Array;
  readonly firstIndex: Int32Array;
  readonly count: Int32Array;
}

function buildTable(): CanonicalTable {
  const n = CODE_LENGTHS.length;
  const sorted = Uint16Array.from(
    Array.from({ length: n }, (_, i) => i).sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b),
  );
  const codes = new Uint32Array(n);
  const firstCode = new Int32Array(32).fill(-1);
  const firstIndex = new Int32Array(32);
  const count = new Int32Array(32);
  let code = 0;
  let prevLen = CODE_LENGTHS[sorted[0]!]!;
  sorted.forEach((sym, i) => {
    const len = CODE_LENGTHS[sym]!;
    if (i > 0) code = (code + 1) * 2 ** (len - prevLen);
    prevLen = len;
    codes[sym] = code;
    if (count[len] === 0) {
      firstCode[len] = code;
      firstIndex[len] = i;
    }
    count[len]!++;
  });
  return { codes, sorted, firstCode, firstIndex, count };
}

const TABLE = buildTable();

/** Huffman-encodes bytes, padding the last octet with the most significant bits of EOS (ones). */
export function huffmanEncode(input: Uint8Array): Buffer {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (const byte of input) {
    const len = CODE_LENGTHS[byte]!;
    const code = TABLE.codes[byte]!;
    for (let b = len - 1; b >= 0; b--) {
      acc = (acc << 1) | (Math.floor(code / 2 ** b) & 1);
      if (++bits === 8) {
        out.push(acc);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Buffer.from(out);
}

/** Huffman-decodes a string literal. Throws on EOS in the data or invalid padding (RFC 7541 5.2). */
export function huffmanDecode(input: Uint8Array): Buffer {
  const out: number[] = [];
  let code = 0;
  let len = 0;
  for (const byte of input) {
    for (let b = 7; b >= 0; b--) {
      code = code * 2 + ((byte >> b) & 1);
      len++;
      if (len > 30) throw new RangeError('invalid Huffman code');
      const first = TABLE.firstCode[len]!;
      if (first < 0) continue;
      const offset = code - first;
      if (offset >= 0 && offset < TABLE.count[len]!) {
        const sym = TABLE.sorted[TABLE.firstIndex[len]! + offset]!;
        if (sym === EOS) throw new RangeError('EOS inside a Huffman-encoded string');
        out.push(sym);
        code = 0;
        len = 0;
      }
    }
  }
  // Padding: strictly fewer than 8 bits, all ones (a prefix of EOS).
  if (len > 7) throw new RangeError('Huffman padding longer than 7 bits');
  if (code !== 2 ** len - 1) throw new RangeError('Huffman padding is not a prefix of EOS');
  return Buffer.from(out);
}
