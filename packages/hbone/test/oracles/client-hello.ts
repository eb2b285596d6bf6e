/**
 * Naive oracle for parseClientHello, plus a ClientHello builder used as the model in tests.
 *
 * The oracle reads with explicit offsets into Buffers (Buffer.readUInt16BE throws RangeError on an
 * overrun, which it maps to 'error') and shares no code with src/client-hello.ts. It checks in the
 * same order the specification lays the bytes out, and says 'incomplete' only when every byte
 * present is consistent with a ClientHello still to come.
 */

export interface OracleClientHello {
  sni?: string;
  alpn: string[];
  supportedVersions: number[];
  legacyVersion: number;
  cipherSuites: number[];
  bytesConsumed: number;
}

function body(hs: Buffer): Omit<OracleClientHello, 'bytesConsumed'> {
  let o = 0;
  const legacyVersion = hs.readUInt16BE(o);
  if (legacyVersion >> 8 !== 3) throw new Error('version');
  o += 2 + 32;
  const sid = hs.readUInt8(o);
  if (sid > 32) throw new Error('sid');
  o += 1 + sid;
  const csLen = hs.readUInt16BE(o);
  o += 2;
  if (csLen < 2 || csLen % 2 !== 0 || o + csLen > hs.length) throw new Error('cs');
  const cipherSuites: number[] = [];
  for (let k = 0; k < csLen; k += 2) cipherSuites.push(hs.readUInt16BE(o + k));
  o += csLen;
  const comp = hs.readUInt8(o);
  if (comp < 1 || o + 1 + comp > hs.length) throw new Error('comp');
  o += 1 + comp;
  const out: Omit<OracleClientHello, 'bytesConsumed'> = {
    alpn: [],
    supportedVersions: [],
    legacyVersion,
    cipherSuites,
  };
  if (o === hs.length) return out;
  const extLen = hs.readUInt16BE(o);
  o += 2;
  if (o + extLen !== hs.length) throw new Error('ext block length');
  const seen: number[] = [];
  while (o < hs.length) {
    const type = hs.readUInt16BE(o);
    const len = hs.readUInt16BE(o + 2);
    const data = hs.subarray(o + 4, o + 4 + len);
    if (data.length !== len) throw new Error('ext overrun');
    o += 4 + len;
    if (seen.includes(type)) throw new Error('dup');
    seen.push(type);
    if (type === 0) {
      if (data.readUInt16BE(0) !== len - 2 || len - 2 === 0) throw new Error('sni list');
      let p = 2;
      let name: string | undefined;
      while (p < len) {
        const t = data.readUInt8(p);
        const n = data.readUInt16BE(p + 1);
        const bytes = data.subarray(p + 3, p + 3 + n);
        if (bytes.length !== n) throw new Error('sni overrun');
        p += 3 + n;
        if (t !== 0) continue;
        if (name !== undefined || n === 0 || bytes.some((b) => b < 0x21 || b > 0x7e))
          throw new Error('sni name');
        name = bytes.toString('latin1');
      }
      if (name === undefined) throw new Error('no host_name');
      out.sni = name;
    } else if (type === 16) {
      if (data.readUInt16BE(0) !== len - 2 || len - 2 < 2) throw new Error('alpn list');
      let p = 2;
      while (p < len) {
        const n = data.readUInt8(p);
        const bytes = data.subarray(p + 1, p + 1 + n);
        if (n === 0 || bytes.length !== n) throw new Error('alpn name');
        out.alpn.push(bytes.toString('latin1'));
        p += 1 + n;
      }
    } else if (type === 43) {
      const n = data.readUInt8(0);
      if (n !== len - 1 || n < 2 || n % 2 !== 0) throw new Error('versions');
      for (let p = 1; p < len; p += 2) out.supportedVersions.push(data.readUInt16BE(p));
    }
  }
  return out;
}

export function oracleParseClientHello(
  input: Uint8Array,
  maxHandshake = 16384,
  maxRecords = 16,
): OracleClientHello | 'incomplete' | 'error' {
  const buf = Buffer.from(input);
  let hs = Buffer.alloc(0);
  let o = 0;
  let records = 0;
  for (;;) {
    const header = buf.subarray(o, o + 5);
    if (header.length >= 1 && header[0] !== 22) return 'error';
    if (header.length >= 2 && header[1] !== 3) return 'error';
    if (header.length >= 3 && header[2]! > 4) return 'error';
    if (header.length < 5) return 'incomplete';
    const len = header.readUInt16BE(3);
    records += 1;
    if (len === 0 || len > 16384 || records > maxRecords) return 'error';
    const frag = buf.subarray(o + 5, o + 5 + len);
    hs = Buffer.concat([hs, frag]);
    if (hs.length >= 1 && hs[0] !== 1) return 'error';
    let need = Number.POSITIVE_INFINITY;
    if (hs.length >= 4) {
      const bodyLen = hs.readUIntBE(1, 3);
      if (bodyLen > maxHandshake || bodyLen < 41) return 'error';
      need = 4 + bodyLen;
    }
    if (frag.length < len) return 'incomplete';
    o += 5 + len;
    if (hs.length >= need) {
      if (hs.length > need) return 'error';
      try {
        return { ...body(hs.subarray(4)), bytesConsumed: o };
      } catch {
        return 'error';
      }
    }
  }
}

// ---------------------------------------------------------------- builder (the test model)

export interface HelloSpec {
  legacyVersion: number;
  random: Uint8Array;
  sessionId: Uint8Array;
  cipherSuites: number[];
  compression: Uint8Array;
  /** undefined: no extensions block at all (pre-TLS 1.3 form). */
  extensions?: Array<{ type: number; data: Uint8Array }>;
  /** Record fragment sizes (cycled); default one record. */
  fragments?: number[];
  recordVersion?: number;
}

const u16 = (n: number) => [(n >> 8) & 255, n & 255];
const u24 = (n: number) => [(n >> 16) & 255, (n >> 8) & 255, n & 255];

export function sniExtension(name: string): { type: number; data: Uint8Array } {
  const b = Buffer.from(name, 'latin1');
  return { type: 0, data: Uint8Array.from([...u16(b.length + 3), 0, ...u16(b.length), ...b]) };
}

export function alpnExtension(names: string[]): { type: number; data: Uint8Array } {
  const list = names.flatMap((n) => [n.length, ...Buffer.from(n, 'latin1')]);
  return { type: 16, data: Uint8Array.from([...u16(list.length), ...list]) };
}

export function versionsExtension(versions: number[]): { type: number; data: Uint8Array } {
  return { type: 43, data: Uint8Array.from([versions.length * 2, ...versions.flatMap(u16)]) };
}

/** The ClientHello handshake message (type, 24-bit length, body). */
export function buildHandshake(spec: HelloSpec): Uint8Array {
  const b: number[] = [
    ...u16(spec.legacyVersion),
    ...spec.random,
    spec.sessionId.length,
    ...spec.sessionId,
    ...u16(spec.cipherSuites.length * 2),
    ...spec.cipherSuites.flatMap(u16),
    spec.compression.length,
    ...spec.compression,
  ];
  if (spec.extensions !== undefined) {
    const exts = spec.extensions.flatMap((e) => [...u16(e.type), ...u16(e.data.length), ...e.data]);
    b.push(...u16(exts.length), ...exts);
  }
  return Uint8Array.from([1, ...u24(b.length), ...b]);
}

/** Wraps a handshake message in TLS records, fragmented as `sizes` says (cycled). */
export function buildRecords(
  handshake: Uint8Array,
  sizes: number[] = [16384],
  recordVersion = 0x0301,
): Uint8Array {
  const out: number[] = [];
  let o = 0;
  let k = 0;
  while (o < handshake.length) {
    const n = Math.max(1, Math.min(16384, sizes[k++ % sizes.length]!, handshake.length - o));
    out.push(22, ...u16(recordVersion), ...u16(n), ...handshake.subarray(o, o + n));
    o += n;
  }
  return Uint8Array.from(out);
}

export function buildClientHello(spec: HelloSpec): Uint8Array {
  return buildRecords(buildHandshake(spec), spec.fragments, spec.recordVersion);
}
