/**
 * HTTP/2 frames (RFC 9113 section 4 and 6), encoded and decoded by hand so a hostile peer can
 * send exactly the bytes it wants: frames a conforming stack would refuse to produce (a CONNECT
 * with `:path`, a WINDOW_UPDATE that overflows, a RST_STREAM flood) and frames in any order.
 */

/** Client connection preface (RFC 9113 section 3.4). */
export const CLIENT_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Frame type codes (RFC 9113 section 6). */
export const FrameType = Object.freeze({
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
});

/** Frame flags (RFC 9113 section 6). */
export const FrameFlag = Object.freeze({
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
});

/** SETTINGS identifiers (RFC 9113 section 6.5.2, RFC 8441). */
export const SettingId = Object.freeze({
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
  ENABLE_CONNECT_PROTOCOL: 0x8,
});

/** Error codes (RFC 9113 section 7). */
export const ErrorCode = Object.freeze({
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
});

/** The name of an error code, or its hex form. */
export function errorCodeName(code: number): string {
  for (const [name, value] of Object.entries(ErrorCode)) if (value === code) return name;
  return `0x${code.toString(16)}`;
}

/** The name of a frame type, or its hex form. */
export function frameTypeName(type: number): string {
  for (const [name, value] of Object.entries(FrameType)) if (value === type) return name;
  return `0x${type.toString(16)}`;
}

export const FRAME_HEADER_BYTES = 9;
const MAX_STREAM_ID = 0x7fffffff;
const MAX_FRAME_LENGTH = 0xffffff;

/** One frame as it was read off the wire. */
export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** Encodes one frame. The payload may be any length up to 2^24-1: nothing checks it against SETTINGS. */
export function encodeFrame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = EMPTY,
): Buffer {
  if (!Number.isInteger(type) || type < 0 || type > 0xff) throw new RangeError(`frame type ${type}`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) throw new RangeError(`frame flags ${flags}`);
  if (!Number.isInteger(streamId) || streamId < 0 || streamId > MAX_STREAM_ID)
    throw new RangeError(`stream id ${streamId}`);
  if (payload.length > MAX_FRAME_LENGTH) throw new RangeError(`frame payload of ${payload.length} bytes`);
  const out = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId, 5);
  out.set(payload, FRAME_HEADER_BYTES);
  return out;
}

const EMPTY = Buffer.alloc(0);

/** SETTINGS with the given (id, value) pairs, in order (duplicates allowed). */
export function settingsFrame(settings: ReadonlyArray<readonly [number, number]> = []): Buffer {
  const payload = Buffer.allocUnsafe(settings.length * 6);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, i * 6);
    payload.writeUInt32BE(value >>> 0, i * 6 + 2);
  });
  return encodeFrame(FrameType.SETTINGS, 0, 0, payload);
}

export function settingsAckFrame(): Buffer {
  return encodeFrame(FrameType.SETTINGS, FrameFlag.ACK, 0);
}

/** PING with 8 bytes of opaque data (a counter, by default). */
export function pingFrame(data: Uint8Array | bigint = 0n, ack = false): Buffer {
  let payload: Buffer;
  if (typeof data === 'bigint') {
    payload = Buffer.alloc(8);
    payload.writeBigUInt64BE(BigInt.asUintN(64, data));
  } else {
    payload = Buffer.from(data);
  }
  return encodeFrame(FrameType.PING, ack ? FrameFlag.ACK : 0, 0, payload);
}

export function rstStreamFrame(streamId: number, code: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(code >>> 0);
  return encodeFrame(FrameType.RST_STREAM, 0, streamId, payload);
}

/** WINDOW_UPDATE; `increment` is written as given (0 and values above 2^31-1 are protocol errors). */
export function windowUpdateFrame(streamId: number, increment: number): Buffer {
  const payload = Buffer.allocUnsafe(4);
  payload.writeUInt32BE(increment >>> 0);
  return encodeFrame(FrameType.WINDOW_UPDATE, 0, streamId, payload);
}

export function goawayFrame(lastStreamId: number, code: number, debug: string | Uint8Array = ''): Buffer {
  const debugBytes = typeof debug === 'string' ? Buffer.from(debug, 'utf8') : Buffer.from(debug);
  const payload = Buffer.allocUnsafe(8 + debugBytes.length);
  payload.writeUInt32BE(lastStreamId & MAX_STREAM_ID, 0);
  payload.writeUInt32BE(code >>> 0, 4);
  payload.set(debugBytes, 8);
  return encodeFrame(FrameType.GOAWAY, 0, 0, payload);
}

export function dataFrame(streamId: number, data: Uint8Array | string, endStream = false): Buffer {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
  return encodeFrame(FrameType.DATA, endStream ? FrameFlag.END_STREAM : 0, streamId, bytes);
}

export interface HeadersFrameOptions {
  endStream?: boolean;
  /** Default true; false leaves the block open for CONTINUATION frames. */
  endHeaders?: boolean;
}

/** HEADERS carrying an already encoded header block fragment. */
export function headersFrame(streamId: number, block: Uint8Array, opts: HeadersFrameOptions = {}): Buffer {
  let flags = 0;
  if (opts.endStream) flags |= FrameFlag.END_STREAM;
  if (opts.endHeaders ?? true) flags |= FrameFlag.END_HEADERS;
  return encodeFrame(FrameType.HEADERS, flags, streamId, block);
}

export function continuationFrame(streamId: number, block: Uint8Array, endHeaders: boolean): Buffer {
  return encodeFrame(FrameType.CONTINUATION, endHeaders ? FrameFlag.END_HEADERS : 0, streamId, block);
}

export function priorityFrame(streamId: number, dependsOn: number, weight = 16, exclusive = false): Buffer {
  const payload = Buffer.allocUnsafe(5);
  payload.writeUInt32BE(((exclusive ? 0x80000000 : 0) | (dependsOn & MAX_STREAM_ID)) >>> 0);
  payload[4] = weight - 1;
  return encodeFrame(FrameType.PRIORITY, 0, streamId, payload);
}

/** RST_STREAM's error code. */
export function parseRstStream(frame: Frame): number {
  if (frame.payload.length !== 4) throw new RangeError(`RST_STREAM payload of ${frame.payload.length} bytes`);
  return frame.payload.readUInt32BE(0);
}

export interface Goaway {
  readonly lastStreamId: number;
  readonly errorCode: number;
  readonly debug: string;
}

export function parseGoaway(frame: Frame): Goaway {
  if (frame.payload.length < 8) throw new RangeError(`GOAWAY payload of ${frame.payload.length} bytes`);
  return {
    lastStreamId: frame.payload.readUInt32BE(0) & MAX_STREAM_ID,
    errorCode: frame.payload.readUInt32BE(4),
    debug: frame.payload.subarray(8).toString('utf8'),
  };
}

/** SETTINGS entries in wire order. */
export function parseSettings(frame: Frame): Array<[number, number]> {
  if (frame.payload.length % 6 !== 0)
    throw new RangeError(`SETTINGS payload of ${frame.payload.length} bytes`);
  const out: Array<[number, number]> = [];
  for (let i = 0; i < frame.payload.length; i += 6)
    out.push([frame.payload.readUInt16BE(i), frame.payload.readUInt32BE(i + 2)]);
  return out;
}

export function parseWindowUpdate(frame: Frame): number {
  if (frame.payload.length !== 4)
    throw new RangeError(`WINDOW_UPDATE payload of ${frame.payload.length} bytes`);
  return frame.payload.readUInt32BE(0) & MAX_STREAM_ID;
}

/**
 * The data of a DATA frame (padding removed), or the header block fragment of HEADERS /
 * CONTINUATION (padding and priority removed).
 */
export function framePayloadBody(frame: Frame): Buffer {
  let body = frame.payload;
  if (frame.type !== FrameType.DATA && frame.type !== FrameType.HEADERS) return body;
  let padLength = 0;
  if (frame.flags & FrameFlag.PADDED) {
    if (body.length < 1) throw new RangeError('PADDED frame without a pad length');
    padLength = body[0]!;
    body = body.subarray(1);
  }
  if (frame.type === FrameType.HEADERS && frame.flags & FrameFlag.PRIORITY) {
    if (body.length < 5) throw new RangeError('HEADERS with PRIORITY shorter than 5 bytes');
    body = body.subarray(5);
  }
  if (padLength > body.length) throw new RangeError('padding longer than the frame');
  return body.subarray(0, body.length - padLength);
}

/**
 * Incremental frame parser: feed it the bytes as they arrive, take complete frames out. Copies a
 * frame's bytes at most once (when they span chunks). Refuses frames longer than `maxFrameLength`.
 */
export class FrameDecoder {
  readonly #maxFrameLength: number;
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(maxFrameLength = MAX_FRAME_LENGTH) {
    this.#maxFrameLength = maxFrameLength;
  }

  /** Bytes received but not yet part of a complete frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /** Adds bytes and returns the frames they complete, in order. */
  push(chunk: Uint8Array): Frame[] {
    if (chunk.length > 0) {
      this.#chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
      this.#buffered += chunk.length;
    }
    const frames: Frame[] = [];
    for (;;) {
      if (this.#buffered < FRAME_HEADER_BYTES) break;
      const header = this.#peek(FRAME_HEADER_BYTES);
      const length = header.readUIntBE(0, 3);
      if (length > this.#maxFrameLength)
        throw new RangeError(`frame of ${length} bytes exceeds the limit of ${this.#maxFrameLength}`);
      if (this.#buffered < FRAME_HEADER_BYTES + length) break;
      const bytes = this.#take(FRAME_HEADER_BYTES + length);
      frames.push({
        type: bytes[3]!,
        flags: bytes[4]!,
        streamId: bytes.readUInt32BE(5) & MAX_STREAM_ID,
        payload: bytes.subarray(FRAME_HEADER_BYTES),
      });
    }
    return frames;
  }

  /** The first `n` bytes (n <= buffered), joining chunks only when they span. */
  #peek(n: number): Buffer {
    const first = this.#chunks[0]!;
    if (first.length >= n) return first;
    let joined = 0;
    let count = 0;
    while (joined < n) joined += this.#chunks[count++]!.length;
    const merged = Buffer.concat(this.#chunks.slice(0, count));
    this.#chunks.splice(0, count, merged);
    return merged;
  }

  #take(n: number): Buffer {
    const head = this.#peek(n);
    const out = head.subarray(0, n);
    if (head.length === n) this.#chunks.shift();
    else this.#chunks[0] = head.subarray(n);
    this.#buffered -= n;
    return out;
  }
}
