/**
 * Reads the TLS ClientHello at the start of a TCP connection without terminating TLS: enough to
 * route on SNI or ALPN (the east-west gateway case) and then hand the untouched socket to a TLS
 * server. HBONE clients (ztunnel: `cc.enable_sni = false` in src/tls/certificate.rs) send no SNI,
 * ALPN `h2` and TLS 1.3 only; the reader accepts any well-formed ClientHello.
 *
 * Formats: RFC 8446 section 5.1 (records), 4.1.2 (ClientHello), 4.2 (extensions), 4.2.1
 * (supported_versions); RFC 6066 section 3 (server_name); RFC 7301 section 3.1 (ALPN).
 *
 * Hostile input is rejected with InvalidClientHelloError as soon as the bytes seen prove it bad
 * (first byte, record header, handshake header), lengths are bounded before anything is buffered,
 * and every read is bounds-checked: no crash, no unbounded buffer, no hang.
 */

import type { Duplex } from 'node:stream';
import { ClientHelloTimeoutError, InvalidClientHelloError } from './codec-errors.js';

export interface ClientHelloInfo {
  /** The host_name of the server_name extension; absent when none was sent. */
  readonly sni?: string;
  /** ALPN protocol names in the client's order (bytes as Latin-1 characters). */
  readonly alpn: readonly string[];
  /** supported_versions in the client's order (0x0304 = TLS 1.3); empty when the extension is absent. */
  readonly supportedVersions: readonly number[];
  /** ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients). */
  readonly legacyVersion: number;
  /** Cipher suites in the client's order (0x1301 TLS_AES_128_GCM_SHA256, 0x1302 TLS_AES_256_GCM_SHA384, ...). */
  readonly cipherSuites: readonly number[];
  /** Bytes of the records that carried the ClientHello, from the start of the buffer. */
  readonly bytesConsumed: number;
}

export interface ClientHelloLimits {
  /** Largest ClientHello message body accepted, in bytes. Default 16384. */
  readonly maxHandshakeLength?: number;
  /** Most TLS records the ClientHello may be fragmented across. Default 16. */
  readonly maxRecords?: number;
}

export const TLS_CONTENT_TYPE_HANDSHAKE = 22;
export const TLS_HANDSHAKE_CLIENT_HELLO = 1;
/** RFC 8446 section 5.1: a TLSPlaintext fragment is at most 2^14 bytes. */
export const TLS_MAX_PLAINTEXT_FRAGMENT = 16384;
export const TLS_RECORD_HEADER_LENGTH = 5;
export const DEFAULT_CLIENT_HELLO_MAX_HANDSHAKE_LENGTH = 16384;
export const DEFAULT_CLIENT_HELLO_MAX_RECORDS = 16;

const EXT_SERVER_NAME = 0x0000;
const EXT_ALPN = 0x0010;
const EXT_SUPPORTED_VERSIONS = 0x002b;
/** Smallest ClientHello body: version 2, random 32, session id 1, suites 2+2, compression 1+1. */
const MIN_CLIENT_HELLO_BODY = 41;

function limit(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`${name} must be a positive integer`);
  return v;
}

/** Bounds-checked big-endian reader over one vector; every overrun throws the typed error. */
class Reader {
  private pos = 0;
  constructor(
    private readonly buf: Uint8Array,
    private readonly what: string,
  ) {}
  get remaining(): number {
    return this.buf.length - this.pos;
  }
  private need(n: number, field: string): void {
    if (n > this.remaining)
      throw new InvalidClientHelloError(`${this.what}: ${field} overruns its enclosing length`);
  }
  u8(field: string): number {
    this.need(1, field);
    return this.buf[this.pos++]!;
  }
  u16(field: string): number {
    this.need(2, field);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }
  bytes(n: number, field: string): Uint8Array {
    this.need(n, field);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
  /** A sub-reader over a vector with a `lenBytes`-byte length prefix. */
  vector(lenBytes: 1 | 2, field: string): Reader {
    const len = lenBytes === 1 ? this.u8(`${field} length`) : this.u16(`${field} length`);
    return new Reader(this.bytes(len, field), field);
  }
  end(field: string): void {
    if (this.remaining !== 0)
      throw new InvalidClientHelloError(`${field}: ${this.remaining} unexpected trailing bytes`);
  }
}

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return s;
}

/** Parses the body (after the 4-byte handshake header) of a ClientHello message. */
function parseBody(body: Uint8Array): Omit<ClientHelloInfo, 'bytesConsumed'> {
  const r = new Reader(body, 'ClientHello');
  const legacyVersion = r.u16('legacy_version');
  if (legacyVersion >> 8 !== 3) {
    throw new InvalidClientHelloError(
      `legacy_version 0x${legacyVersion.toString(16).padStart(4, '0')} is not TLS`,
    );
  }
  r.bytes(32, 'random');
  const sessionId = r.vector(1, 'legacy_session_id');
  if (sessionId.remaining > 32) throw new InvalidClientHelloError('legacy_session_id longer than 32 bytes');
  const suites = r.vector(2, 'cipher_suites');
  if (suites.remaining < 2 || suites.remaining % 2 !== 0) {
    throw new InvalidClientHelloError('cipher_suites length must be even and at least 2');
  }
  const cipherSuites: number[] = [];
  while (suites.remaining > 0) cipherSuites.push(suites.u16('cipher suite'));
  const compression = r.vector(1, 'legacy_compression_methods');
  if (compression.remaining < 1) throw new InvalidClientHelloError('legacy_compression_methods is empty');

  let sni: string | undefined;
  const alpn: string[] = [];
  const supportedVersions: number[] = [];
  // Extensions are optional before TLS 1.3 (RFC 5246 section 7.4.1.2): nothing left means none.
  if (r.remaining > 0) {
    const exts = r.vector(2, 'extensions');
    r.end('ClientHello');
    const seen = new Set<number>();
    while (exts.remaining > 0) {
      const type = exts.u16('extension type');
      const data = exts.vector(2, `extension 0x${type.toString(16).padStart(4, '0')}`);
      // RFC 8446 section 4.2: "There MUST NOT be more than one extension of the same type".
      if (seen.has(type)) throw new InvalidClientHelloError(`duplicate extension 0x${type.toString(16)}`);
      seen.add(type);
      if (type === EXT_SERVER_NAME) {
        sni = readServerName(data);
      } else if (type === EXT_ALPN) {
        const list = data.vector(2, 'protocol_name_list');
        data.end('application_layer_protocol_negotiation');
        if (list.remaining < 2) throw new InvalidClientHelloError('ALPN: protocol_name_list is empty');
        while (list.remaining > 0) {
          const name = list.vector(1, 'ALPN protocol name');
          if (name.remaining === 0) throw new InvalidClientHelloError('ALPN: empty protocol name');
          alpn.push(latin1(name.bytes(name.remaining, 'ALPN protocol name')));
        }
      } else if (type === EXT_SUPPORTED_VERSIONS) {
        const list = data.vector(1, 'supported_versions');
        data.end('supported_versions');
        if (list.remaining < 2 || list.remaining % 2 !== 0) {
          throw new InvalidClientHelloError('supported_versions length must be even and at least 2');
        }
        while (list.remaining > 0) supportedVersions.push(list.u16('version'));
      }
    }
  }
  return {
    ...(sni === undefined ? {} : { sni }),
    alpn: Object.freeze(alpn),
    supportedVersions: Object.freeze(supportedVersions),
    legacyVersion,
    cipherSuites: Object.freeze(cipherSuites),
  };
}

/** RFC 6066 section 3: ServerNameList of (name_type, HostName); one host_name at most. */
function readServerName(data: Reader): string {
  const list = data.vector(2, 'server_name_list');
  data.end('server_name');
  if (list.remaining === 0) throw new InvalidClientHelloError('server_name: empty server_name_list');
  let hostName: string | undefined;
  while (list.remaining > 0) {
    const type = list.u8('name_type');
    const name = list.vector(2, 'HostName');
    if (type !== 0) continue; // only host_name(0) is defined; others are skipped
    if (hostName !== undefined) throw new InvalidClientHelloError('server_name: more than one host_name');
    if (name.remaining === 0) throw new InvalidClientHelloError('server_name: empty host_name');
    const bytes = name.bytes(name.remaining, 'HostName');
    for (const b of bytes) {
      if (b < 0x21 || b > 0x7e)
        throw new InvalidClientHelloError('server_name: host_name is not visible ASCII');
    }
    hostName = latin1(bytes);
  }
  if (hostName === undefined) throw new InvalidClientHelloError('server_name: no host_name entry');
  return hostName;
}

/**
 * Parses a ClientHello from the first bytes of a connection. Returns 'incomplete' while the bytes
 * seen so far are a valid prefix; throws as soon as they cannot be. The ClientHello may span
 * several handshake records (RFC 8446 section 5.1); nothing may follow it inside its last record.
 * @throws InvalidClientHelloError.
 */
export function parseClientHello(
  buf: Uint8Array,
  limits: ClientHelloLimits = {},
): ClientHelloInfo | 'incomplete' {
  const r = scanClientHello(buf, limits);
  return typeof r === 'number' ? 'incomplete' : r;
}

/**
 * parseClientHello's engine. When incomplete, returns the buffer length at which scanning again
 * can make progress or find a new error (the next record header, handshake header or record end),
 * so a socket reader fed one byte at a time re-scans O(records) times, not O(bytes).
 */
function scanClientHello(buf: Uint8Array, limits: ClientHelloLimits): ClientHelloInfo | number {
  const maxHandshakeLength = limit(
    limits.maxHandshakeLength,
    DEFAULT_CLIENT_HELLO_MAX_HANDSHAKE_LENGTH,
    'maxHandshakeLength',
  );
  const maxRecords = limit(limits.maxRecords, DEFAULT_CLIENT_HELLO_MAX_RECORDS, 'maxRecords');
  const fragments: Uint8Array[] = [];
  let have = 0; // handshake bytes gathered so far
  let need = -1; // 4 + body length, once the handshake header has been seen
  let pos = 0;
  let records = 0;
  const handshakeByte = (i: number): number => {
    for (const f of fragments) {
      if (i < f.length) return f[i]!;
      i -= f.length;
    }
    return -1;
  };
  for (;;) {
    // Record header: check each byte as soon as it is there.
    if (pos < buf.length && buf[pos] !== TLS_CONTENT_TYPE_HANDSHAKE) {
      throw new InvalidClientHelloError(
        records === 0
          ? `not a TLS handshake record (content type ${buf[pos]})`
          : `record of content type ${buf[pos]} inside the ClientHello`,
        pos,
      );
    }
    // legacy_record_version: 0x0300..0x0304 (SSL 3.0 .. TLS 1.3 numbering).
    if (pos + 1 < buf.length && buf[pos + 1] !== 3)
      throw new InvalidClientHelloError('record version is not TLS', pos + 1);
    if (pos + 2 < buf.length && buf[pos + 2]! > 4)
      throw new InvalidClientHelloError('record version is not TLS', pos + 2);
    if (pos + TLS_RECORD_HEADER_LENGTH > buf.length) return buf.length + 1;
    const len = (buf[pos + 3]! << 8) | buf[pos + 4]!;
    if (len === 0) throw new InvalidClientHelloError('zero-length handshake record', pos + 3);
    if (len > TLS_MAX_PLAINTEXT_FRAGMENT) {
      throw new InvalidClientHelloError(
        `record length ${len} exceeds ${TLS_MAX_PLAINTEXT_FRAGMENT}`,
        pos + 3,
      );
    }
    records++;
    if (records > maxRecords)
      throw new InvalidClientHelloError(`ClientHello spans more than ${maxRecords} records`, pos);
    const start = pos + TLS_RECORD_HEADER_LENGTH;
    const fragment = buf.subarray(start, Math.min(start + len, buf.length));
    fragments.push(fragment);
    have += fragment.length;
    // Handshake header: type then a 24-bit length.
    if (have >= 1 && handshakeByte(0) !== TLS_HANDSHAKE_CLIENT_HELLO) {
      throw new InvalidClientHelloError(
        `handshake message type ${handshakeByte(0)} is not ClientHello`,
        start,
      );
    }
    if (need < 0 && have >= 4) {
      const bodyLen = (handshakeByte(1) << 16) | (handshakeByte(2) << 8) | handshakeByte(3);
      if (bodyLen > maxHandshakeLength) {
        throw new InvalidClientHelloError(`ClientHello length ${bodyLen} exceeds ${maxHandshakeLength}`);
      }
      if (bodyLen < MIN_CLIENT_HELLO_BODY)
        throw new InvalidClientHelloError(`ClientHello length ${bodyLen} too short`);
      need = 4 + bodyLen;
    }
    if (fragment.length < len) return need < 0 ? Math.min(start + len, buf.length + 4 - have) : start + len;
    pos = start + len;
    if (need >= 0 && have >= need) {
      // ClientHello is the client's only handshake message until the server answers.
      if (have > need) throw new InvalidClientHelloError('data after the ClientHello in its record', pos);
      const message = new Uint8Array(have);
      let off = 0;
      for (const f of fragments) {
        message.set(f, off);
        off += f.length;
      }
      return Object.freeze({ ...parseBody(message.subarray(4)), bytesConsumed: pos });
    }
  }
}

export interface ReadClientHelloOptions extends ClientHelloLimits {
  /** Give up (ClientHelloTimeoutError) after this long. Default 5000 ms. */
  readonly timeoutMs?: number;
  /** Most bytes buffered while waiting. Default one full record: 16384 + 5. */
  readonly maxBytes?: number;
  /** Abort the wait (rejects with the signal's reason). */
  readonly signal?: AbortSignal;
}

/**
 * Waits for the ClientHello on a fresh socket and returns what it says, then puts every byte read
 * back with `socket.unshift()`, so that the socket can be handed to a TLS server untouched (Node's
 * TLSSocket feeds bytes already buffered on a net.Socket into the handshake). The socket must not
 * be read by anyone else meanwhile. Bytes are put back on every path where the socket is still
 * readable, errors included; the timer is unref()ed and cleared on every path.
 * @throws (rejects) InvalidClientHelloError, ClientHelloTimeoutError, the socket's own error, or
 *   the abort reason.
 */
export function readClientHello(
  socket: Duplex,
  options: ReadClientHelloOptions = {},
): Promise<ClientHelloInfo> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const maxBytes = options.maxBytes ?? TLS_MAX_PLAINTEXT_FRAGMENT + TLS_RECORD_HEADER_LENGTH;
  const { signal } = options;
  return new Promise<ClientHelloInfo>((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    if (socket.readableEnded || socket.destroyed) {
      reject(new InvalidClientHelloError('connection ended before a complete ClientHello'));
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    let rescanAt = 1; // buffer length at which scanning again is worthwhile
    let settled = false;
    const timer = setTimeout(() => finish(new ClientHelloTimeoutError(timeoutMs)), timeoutMs);
    timer.unref();

    function cleanup(): void {
      clearTimeout(timer);
      socket.removeListener('readable', onReadable);
      socket.removeListener('end', onEnd);
      socket.removeListener('close', onEnd);
      socket.removeListener('error', onError);
      signal?.removeEventListener('abort', onAbort);
    }
    function finish(err: unknown, info?: ClientHelloInfo): void {
      if (settled) return;
      settled = true;
      cleanup();
      if (total > 0 && !socket.destroyed && !socket.readableEnded)
        socket.unshift(Buffer.concat(chunks, total));
      if (info !== undefined) resolve(info);
      else reject(err);
    }
    function onReadable(): void {
      for (;;) {
        if (settled) return;
        const chunk: unknown = socket.read();
        if (chunk === null) return;
        if (!Buffer.isBuffer(chunk)) {
          finish(new TypeError('readClientHello needs a byte stream (was setEncoding() called?)'));
          return;
        }
        chunks.push(chunk);
        total += chunk.length;
        let result: ClientHelloInfo | number = rescanAt;
        if (total >= rescanAt || total >= maxBytes) {
          try {
            result = scanClientHello(Buffer.concat(chunks, total), options);
          } catch (err) {
            finish(err);
            return;
          }
        }
        if (typeof result === 'number') {
          rescanAt = result;
          if (total >= maxBytes)
            finish(new InvalidClientHelloError(`no complete ClientHello within ${maxBytes} bytes`));
        } else if (result.bytesConsumed > maxBytes) {
          finish(new InvalidClientHelloError(`ClientHello larger than ${maxBytes} bytes`));
        } else {
          finish(undefined, result);
        }
      }
    }
    function onEnd(): void {
      finish(new InvalidClientHelloError('connection ended before a complete ClientHello'));
    }
    function onError(err: Error): void {
      finish(err);
    }
    function onAbort(): void {
      finish(signal?.reason);
    }
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    signal?.addEventListener('abort', onAbort, { once: true });
    // Bytes may already be buffered (no new 'readable' would come for them).
    if (socket.readableLength > 0) onReadable();
  });
}
