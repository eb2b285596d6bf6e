import { Duplex } from 'node:stream';

/**
 * Why this exists: node's HTTP/2 stops reading its socket while one of its own writes is in
 * progress (node src/node_http2.cc `MaybeStopReading`, a guard against memory exhaustion). With
 * HBONE's large windows (4 MiB per stream, 16 MiB per connection) two node peers sending bulk
 * data both ways can fill the TCP buffers in both directions; each then waits for its write
 * while refusing to read, and the connection wedges for good (seen with 10 echo tunnels of
 * 1 MiB). ztunnel (Rust h2) reads while it writes, so it never meets this; two node peers do.
 *
 * Handing node's HTTP/2 session this Duplex instead of the TLS socket makes every session write
 * complete at once: bytes go to the TLS socket's own buffer, so the session never has a write
 * "in progress" and never stops reading. What can pile up here is bounded by the peer's
 * flow-control windows (it cannot grant credit for DATA it has not received) plus control
 * frames; `maxBufferedBytes` is the backstop that drops a connection whose peer stops reading
 * while it keeps us writing (e.g. a PING flood without reading the ACKs).
 */
export class WriteBufferedSocket extends Duplex {
  readonly #inner: Duplex;
  readonly #maxBufferedBytes: number;

  constructor(inner: Duplex, maxBufferedBytes: number) {
    super({ allowHalfOpen: true, readableHighWaterMark: 64 * 1024 });
    this.#inner = inner;
    this.#maxBufferedBytes = maxBufferedBytes;
    inner.on('data', (chunk: Buffer) => {
      if (!this.push(chunk)) inner.pause();
    });
    inner.once('end', () => this.push(null));
    inner.once('error', (err) => this.destroy(err));
    inner.once('close', () => this.destroy());
  }

  /** The wrapped socket (for addresses and TLS facts). */
  get inner(): Duplex {
    return this.#inner;
  }

  /** Bytes written by HTTP/2 and not yet taken by the kernel. */
  get bufferedBytes(): number {
    return this.#inner.writableLength;
  }

  override _read(): void {
    this.#inner.resume();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.#inner.write(chunk);
    this.#check(cb);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (err?: Error | null) => void): void {
    // One buffer per batch: HTTP/2 writes many tiny frames (PING and SETTINGS ACKs, WINDOW_UPDATEs),
    // and a peer that floods PINGs without reading would otherwise queue one Buffer object, and
    // its overhead, per 17-byte ACK (1,000,000 PINGs: ~150 MiB of heap instead of ~12 MiB).
    this.#inner.write(chunks.length === 1 ? chunks[0]!.chunk : Buffer.concat(chunks.map((c) => c.chunk)));
    this.#check(cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.#inner.end(() => cb());
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.#inner.destroyed) this.#inner.destroy(err ?? undefined);
    cb(err);
  }

  #check(cb: (err?: Error | null) => void): void {
    if (this.#inner.writableLength > this.#maxBufferedBytes) {
      cb(new Error(`peer is not reading: ${this.#inner.writableLength} bytes queued for it`));
      return;
    }
    cb();
  }
}
