import type { Http2Stream, IncomingHttpHeaders } from 'node:http2';
import { Duplex } from 'node:stream';
import { SessionClosedError, StreamResetError, TunnelClosedError } from './errors.js';
import type { InboundAccount, InboundBudget } from './inbound-budget.js';
import { H2_CODES } from './settings.js';

/**
 * Sends RST_STREAM(code) and nothing else. node's `Http2Stream#close(code)` first ends the
 * writable side, which puts END_STREAM on the wire before the RST_STREAM: the peer would read a
 * clean end-of-file before learning of the reset. Shadowing `_final` for this one stream makes
 * that `end()` a no-op, so the peer sees only the reset (RFC 9113 section 6.4).
 *
 * A write still in flight needs one more step: node's write path checks on the next tick whether
 * the stream is ending and, if so, shuts its writable side down itself (END_STREAM), and inside
 * node's HTTP/2 callbacks a CANCEL reset is held back until after that check. Closing one tick
 * later lets the check see a stream that is not ending (conformance-server.test.ts, [DAT-9]).
 */
export function resetStream(stream: Http2Stream, code: number): void {
  if (stream.closed || stream.destroyed) return;
  if (!stream.writableEnded) {
    (stream as unknown as { _final: (cb: () => void) => void })._final = (cb) => cb();
  }
  if (stream.writableLength > 0) {
    process.nextTick(() => {
      if (!stream.closed && !stream.destroyed) stream.close(code);
    });
    return;
  }
  stream.close(code);
}

/** Stream errors are read from 'close' and rstCode; without a listener node would throw. */
function ignoreStreamError(): void {}

/** What both ends know about a tunnel once the CONNECT has been answered with 200. */
export interface TunnelInfo {
  /** The `:authority` of the CONNECT, as sent on the wire. */
  readonly authority: string;
  /** The CONNECT request headers (pseudo-headers included), as received or sent. */
  readonly requestHeaders: IncomingHttpHeaders;
  /** The response headers (`:status` 200, optional `baggage`). */
  readonly responseHeaders: IncomingHttpHeaders;
}

/** What the tunnel needs besides its stream: the connection's socket (not node's proxy of it). */
export interface TunnelContext extends TunnelInfo {
  readonly socket: { readonly destroyed: boolean };
  /** The connection's cap on bytes held for slow readers (inbound-budget.ts), if any. */
  readonly inbound?: InboundBudget | undefined;
}

/**
 * An HBONE tunnel: the byte stream of one HTTP/2 CONNECT stream, as a Node `Duplex` with TCP's
 * half-close semantics (HBONE-WIRE.md "Bytes, half-close and resets"):
 * - `end()` sends END_STREAM (an empty DATA frame when nothing is queued); reads go on.
 * - the peer's END_STREAM, or RST_STREAM with NO_ERROR or CANCEL, is our end-of-file;
 * - any other RST_STREAM destroys the tunnel with a `StreamResetError` carrying the h2 code;
 * - `destroy()` resets the stream with CANCEL, `destroy(err)` with CONNECT_ERROR
 *   (RFC 9113 section 8.5: the code for a failed TCP connection behind a CONNECT).
 *
 * Why a wrapper rather than the Http2Stream itself: node:http2 treats a CANCEL reset as a
 * destroy without 'end', and reports other codes with untyped errors. The wrapper pins the
 * semantics HBONE needs and counts payload bytes for access logs.
 */
export class HboneTunnel extends Duplex implements TunnelInfo {
  readonly authority: string;
  readonly requestHeaders: IncomingHttpHeaders;
  readonly responseHeaders: IncomingHttpHeaders;
  /** Payload bytes received from the peer. */
  bytesReceived = 0;
  /** Payload bytes handed to HTTP/2 for sending. */
  bytesSent = 0;
  /** The HTTP/2 stream id, for logs. */
  readonly streamId: number;

  readonly #stream: Http2Stream;
  /** The connection's socket, to tell a peer's RST_STREAM(CANCEL) from a dead connection. */
  readonly #socket: { readonly destroyed: boolean };
  #readEnded = false;
  #pendingWrite: ((err?: Error | null) => void) | undefined;
  #peerClosed = false;
  /** Where we report the bytes we hold (ours and the stream's) to the connection's budget. */
  readonly #inbound: InboundAccount | undefined;

  constructor(stream: Http2Stream, info: TunnelContext) {
    // allowHalfOpen: our write side and the peer's are independent (TCP half-close).
    super({ allowHalfOpen: true, highWaterMark: 64 * 1024 });
    this.#stream = stream;
    this.#socket = info.socket;
    this.authority = info.authority;
    this.requestHeaders = info.requestHeaders;
    this.responseHeaders = info.responseHeaders;
    this.streamId = stream.id ?? 0;

    this.#inbound = info.inbound?.account();
    stream.on('data', (chunk: Buffer) => {
      this.bytesReceived += chunk.length;
      if (!this.push(chunk)) stream.pause();
      this.#inbound?.set(this.readableLength + stream.readableLength);
    });
    if (this.#inbound !== undefined) {
      const account = this.#inbound;
      // A paused Http2Stream keeps buffering what the peer sends within the stream window, and
      // emits nothing while it does: node's session hands each DATA chunk to `push()`, the one
      // place to see the stream's buffer grow.
      const push = stream.push;
      stream.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
        const more = push.call(stream, chunk, encoding);
        account.set(this.readableLength + stream.readableLength);
        return more;
      };
      // Read to the end (or gone): nothing held any more.
      this.once('end', () => account.set(0));
    }
    // node's Http2Stream#_destroy pushes an end-of-file of its own when the connection is torn
    // down: only an 'end' on a live stream is the peer's END_STREAM.
    stream.on('end', () => {
      if (!stream.destroyed) this.#endRead();
    });
    stream.on('drain', () => this.#flushPending(null));
    // Errors are reported through 'close' and rstCode; without a listener node would throw.
    stream.on('error', ignoreStreamError);
    stream.on('close', () => this.#onStreamClose());
  }

  /** The underlying HTTP/2 stream, for advanced use (priorities, raw state). */
  get stream(): Http2Stream {
    return this.#stream;
  }

  /** Resets the stream with the given HTTP/2 code (default CANCEL) and destroys the tunnel. */
  reset(code: number = H2_CODES.CANCEL): void {
    resetStream(this.#stream, code);
    this.destroy();
  }

  override _read(): void {
    if (!this.#readEnded) this.#stream.resume();
    this.#inbound?.set(this.readableLength + this.#stream.readableLength);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.#peerClosed || this.#stream.closed || this.#stream.destroyed) {
      cb(new TunnelClosedError('write after the peer closed the tunnel'));
      return;
    }
    this.bytesSent += chunk.length;
    // Backpressure through the stream's own buffer: finish the callback now when it has room,
    // on 'drain' otherwise. Cheaper than a completion callback per write.
    if (this.#stream.write(chunk)) cb();
    else this.#pendingWrite = cb;
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    const all = chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk));
    this._write(all, 'binary', cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.#stream.closed || this.#stream.destroyed || this.#stream.writableEnded) {
      cb();
      return;
    }
    // END_STREAM, on an empty DATA frame if nothing is queued (what ztunnel sends on a FIN).
    this.#stream.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.#inbound?.set(0);
    if (this.#pendingWrite) this.#flushPending(err ?? new TunnelClosedError('tunnel destroyed'));
    // A tunnel that finished both ways (peer's END_STREAM read, ours sent) is auto-destroyed
    // while node may not yet have marked the stream closed: sending a reset then would put a
    // frame on a closed stream (RFC 9113 section 5.1). ztunnel sends nothing after END_STREAM.
    const finishedCleanly = !err && this.#readEnded && this.writableFinished;
    if (!finishedCleanly) resetStream(this.#stream, err ? H2_CODES.CONNECT_ERROR : H2_CODES.CANCEL);
    cb(err);
  }

  #endRead(): void {
    if (this.#readEnded) return;
    this.#readEnded = true;
    this.push(null);
  }

  #flushPending(err: Error | null): void {
    const cb = this.#pendingWrite;
    this.#pendingWrite = undefined;
    cb?.(err);
  }

  #onStreamClose(): void {
    if (this.destroyed) return;
    const code = this.#stream.rstCode ?? H2_CODES.NO_ERROR;
    // node:http2 closes every stream with CANCEL when the connection's socket closes: that is a
    // dead peer, not an end-of-file, unless the stream had already finished both ways.
    if (this.#socket.destroyed) {
      if (this.#readEnded && this.writableFinished) return;
      this.destroy(new SessionClosedError('the HBONE connection closed under the tunnel'));
      return;
    }
    if (code === H2_CODES.NO_ERROR || code === H2_CODES.CANCEL) {
      this.#peerClosed = true;
      this.#endRead();
      // Bytes we could still not hand over are lost: say so rather than hang.
      if (this.#pendingWrite) {
        this.#flushPending(new TunnelClosedError('the peer closed the tunnel before our data was sent'));
      }
      if (this.writableFinished || this.writableEnded) return;
      // The peer will take no more bytes; end our side so the tunnel can close once read.
      if (this.writableLength === 0) this.end();
      return;
    }
    this.destroy(new StreamResetError(code, 'during transfer'));
  }
}
