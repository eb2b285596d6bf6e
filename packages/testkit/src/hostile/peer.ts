import type { Duplex } from 'node:stream';
import {
  CLIENT_PREFACE,
  dataFrame,
  type Frame,
  FrameDecoder,
  FrameFlag,
  FrameType,
  framePayloadBody,
  type Goaway,
  headersFrame,
  parseGoaway,
  parseRstStream,
  pingFrame,
  rstStreamFrame,
  settingsAckFrame,
  windowUpdateFrame,
} from './frames.js';
import { type DecodedField, encodeHeaderBlock, type HeaderField, HpackDecoder } from './hpack.js';

/** A frame as received, with its decoded header list (HEADERS, after any CONTINUATION). */
export interface ReceivedFrame extends Frame {
  /** HEADERS only: the decoded fields of the whole block (set once END_HEADERS arrived). */
  headers?: DecodedField[];
  /** Milliseconds since the peer was created. */
  readonly at: number;
}

export interface RawH2PeerOptions {
  /** ACK the other side's SETTINGS. Default true. */
  ackSettings?: boolean;
  /** Answer PINGs with an ACK. Default true. */
  ackPings?: boolean;
  /** Give back the window of every DATA frame received (stream and connection). Default true. */
  autoWindowUpdate?: boolean;
  /** Frames kept in `frames`; older ones are dropped (counters go on). Default 10,000. */
  maxLoggedFrames?: number;
  /** DATA bytes kept per stream for `dataOf()`; beyond, only counted. Default 1 MiB. */
  maxDataPerStream?: number;
  /** Largest frame the decoder accepts (a larger one closes the peer). Default 16 MiB - 1. */
  maxFrameLength?: number;
}

/** How and when the connection ended. */
export interface PeerClosed {
  /** Milliseconds from the peer's creation to the close. */
  readonly afterMs: number;
  /** The first socket or decoding error, if any. */
  readonly error: Error | undefined;
  /** The first GOAWAY received, if any. */
  readonly goaway: Goaway | undefined;
  /** True when the other side ended the connection (FIN or reset), false when we destroyed it. */
  readonly byPeer: boolean;
}

/** What became of a request stream. */
export type StreamOutcome =
  | { kind: 'response'; status: number; headers: DecodedField[] }
  | { kind: 'reset'; code: number }
  | { kind: 'goaway'; goaway: Goaway }
  | { kind: 'closed' };

export class HostileTimeoutError extends Error {
  override name = 'HostileTimeoutError';
}

interface Waiter {
  pred: (f: ReceivedFrame) => boolean;
  resolve: (f: ReceivedFrame) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

interface StreamState {
  data: Buffer[];
  dataBytes: number;
  ended: boolean;
  rstCode: number | undefined;
  response: DecodedField[] | undefined;
}

/**
 * One end of an HTTP/2 connection spoken frame by frame over any byte stream (usually a TLS
 * socket). It answers SETTINGS and PINGs and returns flow-control window unless told not to,
 * decodes header blocks (HPACK with Huffman and the dynamic table), and otherwise sends exactly
 * what the test asks. Everything it receives is logged, bounded.
 */
export class RawH2Peer {
  readonly socket: Duplex;
  /** The last `maxLoggedFrames` frames received, oldest first. */
  readonly frames: ReceivedFrame[] = [];
  /** Frames received per type, all of them. */
  readonly counts = new Map<number, number>();
  bytesIn = 0;
  bytesOut = 0;
  readonly closed: Promise<PeerClosed>;
  /** The first GOAWAY received. */
  goaway: Goaway | undefined;

  readonly #opts: Required<RawH2PeerOptions>;
  readonly #decoder: FrameDecoder;
  readonly #hpack = new HpackDecoder();
  readonly #started = Date.now();
  readonly #waiters = new Set<Waiter>();
  readonly #streams = new Map<number, StreamState>();
  #headerBlock: { frame: ReceivedFrame; parts: Buffer[]; bytes: number } | undefined;
  #prefaceLeft: number;
  #prefaceSeen: Buffer[] = [];
  #error: Error | undefined;
  #isClosed = false;
  #destroyedByUs = false;
  #endedByPeer = false;
  #nextStreamId: number;

  /**
   * @param socket the connected byte stream
   * @param role 'client' sends the preface on `start()`; 'server' expects and checks it first.
   */
  constructor(
    socket: Duplex,
    readonly role: 'client' | 'server',
    opts: RawH2PeerOptions = {},
  ) {
    this.socket = socket;
    this.#opts = {
      ackSettings: opts.ackSettings ?? true,
      ackPings: opts.ackPings ?? true,
      autoWindowUpdate: opts.autoWindowUpdate ?? true,
      maxLoggedFrames: opts.maxLoggedFrames ?? 10_000,
      maxDataPerStream: opts.maxDataPerStream ?? 1024 * 1024,
      maxFrameLength: opts.maxFrameLength ?? 0xffffff,
    };
    this.#decoder = new FrameDecoder(this.#opts.maxFrameLength);
    this.#prefaceLeft = role === 'server' ? CLIENT_PREFACE.length : 0;
    this.#nextStreamId = role === 'client' ? 1 : 2;
    this.closed = new Promise<PeerClosed>((resolve) => {
      socket.once('close', () => {
        this.#isClosed = true;
        const outcome: PeerClosed = {
          afterMs: Date.now() - this.#started,
          error: this.#error,
          goaway: this.goaway,
          byPeer: this.#endedByPeer || !this.#destroyedByUs,
        };
        for (const w of this.#waiters) {
          clearTimeout(w.timer);
          w.reject(new Error(`connection closed before the frame arrived (${describeClose(outcome)})`));
        }
        this.#waiters.clear();
        resolve(outcome);
      });
    });
    socket.on('error', (err: Error) => {
      this.#error ??= err;
    });
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    // The other side is done (FIN): so are we. Our sockets allow half-open so that a test can
    // send a FIN of its own and go on reading; they must not linger once the other side ends.
    socket.on('end', () => {
      this.#endedByPeer = true;
      socket.destroy();
    });
  }

  /** Milliseconds since the peer was created. */
  get elapsedMs(): number {
    return Date.now() - this.#started;
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** The next unused stream id of our parity (1, 3, 5... for a client). */
  nextStreamId(): number {
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    return id;
  }

  /** Writes frames (joined into one write). False when closed, or when the socket buffers. */
  send(...frames: Buffer[]): boolean {
    if (this.#isClosed || this.socket.destroyed || this.socket.writableEnded) return false;
    const bytes = frames.length === 1 ? frames[0]! : Buffer.concat(frames);
    this.bytesOut += bytes.length;
    return this.socket.write(bytes);
  }

  /** Resolves when the socket has drained its write buffer, or closed; rejects after `timeoutMs`. */
  drained(timeoutMs = 5_000): Promise<void> {
    if (this.#isClosed || this.socket.writableLength === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (): void => {
        clearTimeout(timer);
        this.socket.removeListener('drain', done);
        this.socket.removeListener('close', done);
        resolve();
      };
      const timer = setTimeout(() => {
        this.socket.removeListener('drain', done);
        this.socket.removeListener('close', done);
        reject(new HostileTimeoutError(`socket did not drain within ${timeoutMs} ms`));
      }, timeoutMs);
      this.socket.once('drain', done);
      this.socket.once('close', done);
    });
  }

  /** Sends HEADERS with a literal-only header block; returns the stream id used. */
  request(fields: readonly HeaderField[], opts: { streamId?: number; endStream?: boolean } = {}): number {
    const id = opts.streamId ?? this.nextStreamId();
    this.send(headersFrame(id, encodeHeaderBlock(fields), { endStream: opts.endStream ?? false }));
    return id;
  }

  /** A CONNECT for `authority` (or without one when undefined), with extra fields after it. */
  connectRequest(authority: string | undefined, extra: readonly HeaderField[] = []): number {
    const fields: HeaderField[] = [[':method', 'CONNECT']];
    if (authority !== undefined) fields.push([':authority', authority]);
    return this.request([...fields, ...extra]);
  }

  data(streamId: number, bytes: Uint8Array | string, endStream = false): boolean {
    return this.send(dataFrame(streamId, bytes, endStream));
  }

  reset(streamId: number, code: number): boolean {
    return this.send(rstStreamFrame(streamId, code));
  }

  /**
   * Resolves with the first frame (already received, or to come) matching `pred`. Rejects after
   * `timeoutMs`, or when the connection closes first.
   */
  waitFor(pred: (f: ReceivedFrame) => boolean, timeoutMs = 5_000, what = 'a frame'): Promise<ReceivedFrame> {
    const seen = this.frames.find(pred);
    if (seen) return Promise.resolve(seen);
    if (this.#isClosed) return Promise.reject(new Error(`connection already closed; no ${what}`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        pred,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(waiter);
          reject(new HostileTimeoutError(`no ${what} within ${timeoutMs} ms`));
        }, timeoutMs),
      };
      this.#waiters.add(waiter);
    });
  }

  /** Resolves with the close outcome; if not closed within `timeoutMs`, resolves with `undefined`. */
  async waitForClose(timeoutMs = 5_000): Promise<PeerClosed | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((r) => {
      timer = setTimeout(() => r(undefined), timeoutMs);
    });
    try {
      return await Promise.race([this.closed, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * What became of stream `id`: the response headers, a RST_STREAM, a GOAWAY that excludes it,
   * or the connection closing. Rejects only on timeout.
   */
  async outcome(id: number, timeoutMs = 5_000): Promise<StreamOutcome> {
    const pick = (): StreamOutcome | undefined => {
      const s = this.#streams.get(id);
      if (s?.response) {
        const status = Number(s.response.find(([n]) => n === ':status')?.[1]);
        return { kind: 'response', status, headers: s.response };
      }
      if (s?.rstCode !== undefined) return { kind: 'reset', code: s.rstCode };
      if (this.goaway && this.goaway.lastStreamId < id) return { kind: 'goaway', goaway: this.goaway };
      if (this.#isClosed) return { kind: 'closed' };
      return undefined;
    };
    const now = pick();
    if (now) return now;
    await this.waitFor(
      (f) =>
        (f.streamId === id && (f.type === FrameType.RST_STREAM || f.headers !== undefined)) ||
        f.type === FrameType.GOAWAY,
      timeoutMs,
      `answer on stream ${id}`,
    ).catch((err: unknown) => {
      if (err instanceof HostileTimeoutError) throw err;
    });
    return pick() ?? { kind: 'closed' };
  }

  /** DATA received on a stream (up to `maxDataPerStream` bytes). */
  dataOf(id: number): Buffer {
    return Buffer.concat(this.#streams.get(id)?.data ?? []);
  }

  /** DATA bytes received on a stream, all of them. */
  dataBytesOf(id: number): number {
    return this.#streams.get(id)?.dataBytes ?? 0;
  }

  /** True once the other side sent END_STREAM on the stream. */
  endedByPeer(id: number): boolean {
    return this.#streams.get(id)?.ended ?? false;
  }

  /** The RST_STREAM code the other side sent on the stream, if any. */
  rstCodeOf(id: number): number | undefined {
    return this.#streams.get(id)?.rstCode;
  }

  /** Frames received of one type, counted since the start. */
  count(type: number): number {
    return this.counts.get(type) ?? 0;
  }

  /** Stops reading the socket (TCP backpressure reaches the other side once buffers fill). */
  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  destroy(): void {
    if (!this.#isClosed) this.#destroyedByUs = true;
    this.socket.destroy();
  }

  #stream(id: number): StreamState {
    let s = this.#streams.get(id);
    if (!s) {
      s = { data: [], dataBytes: 0, ended: false, rstCode: undefined, response: undefined };
      this.#streams.set(id, s);
    }
    return s;
  }

  #fail(err: Error): void {
    this.#error ??= err;
    this.destroy();
  }

  #onData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    let bytes = chunk;
    if (this.#prefaceLeft > 0) {
      const take = Math.min(this.#prefaceLeft, bytes.length);
      this.#prefaceSeen.push(bytes.subarray(0, take));
      this.#prefaceLeft -= take;
      bytes = bytes.subarray(take);
      if (this.#prefaceLeft === 0) {
        const seen = Buffer.concat(this.#prefaceSeen);
        this.#prefaceSeen = [];
        if (!seen.equals(CLIENT_PREFACE)) {
          this.#fail(new Error('the client did not send the HTTP/2 preface'));
          return;
        }
      }
    }
    let frames: Frame[];
    try {
      frames = this.#decoder.push(bytes);
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    for (const f of frames) {
      if (this.#isClosed) return;
      this.#onFrame({ ...f, at: Date.now() - this.#started });
    }
  }

  #onFrame(f: ReceivedFrame): void {
    this.counts.set(f.type, (this.counts.get(f.type) ?? 0) + 1);
    // HEADERS are logged once their block is complete, so `headers` is set when waiters look.
    let complete: ReceivedFrame | undefined = f;
    try {
      complete = this.#track(f);
    } catch (err) {
      this.#fail(err as Error);
      return;
    }
    if (!complete) return;
    this.frames.push(complete);
    if (this.frames.length > this.#opts.maxLoggedFrames) this.frames.splice(0, this.frames.length >> 1);
    for (const w of this.#waiters) {
      if (w.pred(complete)) {
        clearTimeout(w.timer);
        this.#waiters.delete(w);
        w.resolve(complete);
      }
    }
  }

  /** Applies a frame to our state and answers what must be answered; returns what to log. */
  #track(f: ReceivedFrame): ReceivedFrame | undefined {
    switch (f.type) {
      case FrameType.SETTINGS:
        if (!(f.flags & FrameFlag.ACK) && this.#opts.ackSettings) this.send(settingsAckFrame());
        return f;
      case FrameType.PING:
        if (!(f.flags & FrameFlag.ACK) && this.#opts.ackPings) this.send(pingFrame(f.payload, true));
        return f;
      case FrameType.GOAWAY:
        this.goaway ??= parseGoaway(f);
        return f;
      case FrameType.RST_STREAM:
        this.#stream(f.streamId).rstCode = parseRstStream(f);
        return f;
      case FrameType.DATA: {
        const s = this.#stream(f.streamId);
        const body = framePayloadBody(f);
        s.dataBytes += body.length;
        if (s.dataBytes <= this.#opts.maxDataPerStream) s.data.push(Buffer.from(body));
        if (f.flags & FrameFlag.END_STREAM) s.ended = true;
        if (this.#opts.autoWindowUpdate && f.payload.length > 0) {
          this.send(windowUpdateFrame(0, f.payload.length));
          if (!s.ended) this.send(windowUpdateFrame(f.streamId, f.payload.length));
        }
        return f;
      }
      case FrameType.HEADERS: {
        const part = Buffer.from(framePayloadBody(f));
        if (f.flags & FrameFlag.END_STREAM) this.#stream(f.streamId).ended = true;
        if (f.flags & FrameFlag.END_HEADERS) return this.#finishBlock(f, [part]);
        this.#headerBlock = { frame: f, parts: [part], bytes: part.length };
        return undefined;
      }
      case FrameType.CONTINUATION: {
        const block = this.#headerBlock;
        if (!block || block.frame.streamId !== f.streamId) throw new Error('unexpected CONTINUATION');
        block.parts.push(Buffer.from(f.payload));
        block.bytes += f.payload.length;
        if (block.bytes > 1024 * 1024) throw new Error('header block above 1 MiB');
        if (!(f.flags & FrameFlag.END_HEADERS)) return undefined;
        this.#headerBlock = undefined;
        return this.#finishBlock(block.frame, block.parts);
      }
      default:
        return f;
    }
  }

  #finishBlock(first: ReceivedFrame, parts: Buffer[]): ReceivedFrame {
    const headers = this.#hpack.decode(Buffer.concat(parts));
    const s = this.#stream(first.streamId);
    // The first block with :status is the response; later ones are trailers (never in HBONE).
    if (s.response === undefined && headers.some(([n]) => n === ':status')) s.response = headers;
    return { ...first, headers };
  }
}

export function describeClose(c: PeerClosed): string {
  const parts = [`after ${c.afterMs} ms`, c.byPeer ? 'by the peer' : 'by us'];
  if (c.goaway) parts.push(`GOAWAY code ${c.goaway.errorCode} last ${c.goaway.lastStreamId}`);
  if (c.error) parts.push(`error ${c.error.message}`);
  return parts.join(', ');
}
