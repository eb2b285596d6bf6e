/**
 * The byte protocols the benchmarks speak, identical over a raw TLS socket and an HBONE tunnel
 * (both are Node Duplexes), so the only difference measured is the transport.
 *
 * Bulk ("sink"): the client sends a 4-byte big-endian block size, then whole blocks; the server
 * answers one byte per block received. The client stops at a block boundary when its byte or
 * time budget is spent, and the clock stops at the last acknowledgement: the figure counts bytes
 * that reached the server process, not bytes buffered on the client.
 *
 * Echo: every byte comes back. Used one byte at a time for round trips.
 */
import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';

const ACK = Buffer.from([0x4b]);

/** Server side of the bulk protocol. */
export function serveSink(s: Duplex): void {
  let blockSize = 0;
  let header: Buffer | undefined = Buffer.alloc(0);
  let inBlock = 0;
  s.on('error', () => {});
  s.on('data', (chunk: Buffer) => {
    let n = chunk.length;
    if (header !== undefined) {
      const h: Buffer = Buffer.concat([header, chunk]);
      if (h.length < 4) {
        header = h;
        return;
      }
      blockSize = h.readUInt32BE(0);
      n = h.length - 4;
      header = undefined;
    }
    inBlock += n;
    while (blockSize > 0 && inBlock >= blockSize) {
      inBlock -= blockSize;
      s.write(ACK);
    }
  });
  s.on('end', () => s.end());
}

/** Server side of the echo protocol. */
export function serveEcho(s: Duplex): void {
  s.on('error', () => {});
  s.on('data', (chunk: Buffer) => s.write(chunk));
  s.on('end', () => s.end());
}

export interface BulkOptions {
  readonly blockSize: number;
  readonly maxBlocks: number;
  /** No new block starts after this long. */
  readonly maxMs: number;
  /** Size of each write (default 64 KiB, what a TCP socket piped into a tunnel hands over). */
  readonly writeSize?: number;
}

export interface BulkResult {
  readonly bytes: number;
  readonly ms: number;
  readonly mbps: number;
  /** `performance.now()` at the first write and at the last acknowledgement. */
  readonly start: number;
  readonly end: number;
}

const chunks = new Map<number, Buffer>();
function chunkOf(size: number): Buffer {
  let c = chunks.get(size);
  if (!c) {
    c = Buffer.alloc(size);
    for (let i = 0; i < size; i++) c[i] = (i * 131 + 7) & 0xff;
    chunks.set(size, c);
  }
  return c;
}

/**
 * Client side of the bulk protocol on an open stream. Resolves when every block sent has been
 * acknowledged; rejects on a stream error or after `maxMs + 30 s`.
 */
export function bulkSend(s: Duplex, o: BulkOptions): Promise<BulkResult> {
  const writeSize = o.writeSize ?? 64 * 1024;
  if (o.blockSize % writeSize !== 0) throw new RangeError('blockSize must be a multiple of writeSize');
  const perBlock = o.blockSize / writeSize;
  const chunk = chunkOf(writeSize);
  return new Promise<BulkResult>((resolve, reject) => {
    const header = Buffer.alloc(4);
    header.writeUInt32BE(o.blockSize);
    let blocks = 0;
    let inBlock = 0;
    let writing = true;
    let acks = 0;
    const t0 = performance.now();
    const guard = setTimeout(
      () => finish(new Error(`bulk send timed out (${acks}/${blocks} acks)`)),
      o.maxMs + 30_000,
    );
    const finish = (err?: Error): void => {
      clearTimeout(guard);
      s.removeListener('data', onData);
      s.removeListener('error', finish);
      s.removeListener('drain', pump);
      if (err) reject(err);
      else {
        const end = performance.now();
        const ms = end - t0;
        const bytes = blocks * o.blockSize;
        resolve({ bytes, ms, mbps: bytes / 1e6 / (ms / 1000), start: t0, end });
      }
    };
    const onData = (d: Buffer): void => {
      acks += d.length;
      if (!writing && acks >= blocks) finish();
    };
    const pump = (): void => {
      for (;;) {
        if (inBlock === 0) {
          if (blocks >= o.maxBlocks || performance.now() - t0 >= o.maxMs) {
            writing = false;
            if (acks >= blocks) finish();
            return;
          }
          blocks++;
        }
        inBlock = (inBlock + 1) % perBlock;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
    };
    s.on('data', onData);
    s.once('error', finish);
    s.write(header);
    pump();
  });
}

/**
 * One-byte round trips on an echo stream: write one byte, wait for it, `count` times or until
 * `maxMs` has passed. Returns each round trip in microseconds.
 */
export function pingPong(s: Duplex, count: number, maxMs: number): Promise<number[]> {
  return new Promise<number[]>((resolve, reject) => {
    const out: number[] = [];
    const one = Buffer.from([0x2a]);
    const t0 = performance.now();
    let sentAt = 0;
    const guard = setTimeout(() => finish(new Error('echo timed out')), maxMs + 10_000);
    const finish = (err?: Error): void => {
      clearTimeout(guard);
      s.removeListener('data', onData);
      s.removeListener('error', finish);
      if (err) reject(err);
      else resolve(out);
    };
    const send = (): void => {
      sentAt = performance.now();
      s.write(one);
    };
    const onData = (d: Buffer): void => {
      const now = performance.now();
      if (d.length !== 1) {
        finish(new Error(`echo returned ${d.length} bytes at once`));
        return;
      }
      out.push((now - sentAt) * 1000);
      if (out.length >= count || now - t0 >= maxMs) finish();
      else send();
    };
    s.on('data', onData);
    s.once('error', finish);
    send();
  });
}
