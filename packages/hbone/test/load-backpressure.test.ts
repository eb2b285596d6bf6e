/**
 * Backpressure under load, on ONE HBONE connection: tunnels whose server-side reader stops reading
 * while ten others each carry 8 MiB. The stalled tunnels must cost no more than their stream
 * windows (4 MiB each) on the server, and must not hold up the others (each stream has its own
 * window, and a stalled stream keeps only its own).
 *
 * Memory is measured in this process, which holds both ends; the client side of a stalled tunnel
 * is bounded by its write buffers (write() turns false), so the growth is the server's buffering.
 * `LOAD_REPORT=1` prints the measurements (docs/load.md quotes them).
 */
import { createHash, randomBytes } from 'node:crypto';
import { collectGarbage, memoryWatch } from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type HboneTunnel,
  INITIAL_CONNECTION_WINDOW_BYTES,
  INITIAL_STREAM_WINDOW_BYTES,
} from '../src/index.js';
import { Harness } from './harness.js';

const h = new Harness();
const MiB = 1024 * 1024;
/** Random bytes the transfers are sliced from, allocated before any measurement starts. */
let data: Buffer;
beforeAll(async () => {
  await h.init();
  data = randomBytes(16 * MiB);
  collectGarbage();
});
afterEach(() => h.cleanup());

const STALLED_HOST = '10.0.0.99';
const report = (name: string, facts: Record<string, unknown>): void => {
  if (process.env.LOAD_REPORT) process.stdout.write(`[load] ${name}: ${JSON.stringify(facts)}\n`);
};

/**
 * A server whose tunnels to STALLED_HOST are accepted and never read; every other tunnel is a
 * hashing sink that answers with the sha256 and the byte count of what it read, then ends.
 */
async function server() {
  const stalled: HboneTunnel[] = [];
  const { srv, port } = await h.server_((t) => {
    const tunnel = t.accept();
    tunnel.on('error', () => {});
    if (t.authority.host === STALLED_HOST) {
      stalled.push(tunnel); // no reader: the tunnel fills its 64 KiB buffer, then pauses the stream
      return;
    }
    const hash = createHash('sha256');
    let n = 0;
    tunnel.on('data', (c: Buffer) => {
      hash.update(c);
      n += c.length;
    });
    tunnel.on('end', () => tunnel.end(`${hash.digest('hex')} ${n}`));
  });
  return { srv, port, stalled };
}

/** Writes as fast as the tunnel accepts (up to `cap`); live counters. */
function flood(tunnel: HboneTunnel, cap: number) {
  const chunk = Buffer.alloc(64 * 1024, 0x5a);
  const state = {
    accepted: 0,
    error: undefined as unknown,
    /** Stops writing and half-closes (after what is queued). */
    stop: (): void => {
      cap = 0;
      tunnel.end();
    },
  };
  const go = (): void => {
    while (state.accepted < cap && !tunnel.destroyed && !tunnel.writableEnded) {
      state.accepted += chunk.length;
      if (!tunnel.write(chunk)) {
        tunnel.once('drain', go);
        return;
      }
    }
  };
  tunnel.on('error', (err) => {
    state.error = err;
  });
  go();
  return state;
}

/** Sends `body` in 64 KiB writes with backpressure, half-closes, and reads the server's answer. */
async function transfer(tunnel: HboneTunnel, body: Buffer): Promise<{ answer: string; ms: number }> {
  const started = Date.now();
  const chunks: Buffer[] = [];
  const answered = new Promise<string>((resolve, reject) => {
    tunnel.on('data', (c: Buffer) => chunks.push(c));
    tunnel.once('end', () => resolve(Buffer.concat(chunks).toString()));
    tunnel.once('error', reject);
  });
  for (let off = 0; off < body.length; off += 64 * 1024) {
    if (!tunnel.write(body.subarray(off, off + 64 * 1024))) {
      await new Promise((r) => tunnel.once('drain', r));
    }
  }
  tunnel.end();
  const answer = await answered;
  return { answer, ms: Date.now() - started };
}

/** Polls `read` until it stays put for `quietMs`; returns the last value. */
async function plateau(read: () => number, quietMs = 300, maxMs = 10_000): Promise<number> {
  const started = Date.now();
  let last = read();
  let since = Date.now();
  while (Date.now() - started < maxMs) {
    await new Promise((r) => setTimeout(r, 25));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  return last;
}

async function scenario(stalledCount: number) {
  const { port, stalled } = await server();
  const session = await h.connect(port);
  const mem = memoryWatch();

  // The stalled tunnels: the client pushes up to 64 MiB into each; backpressure must stop it.
  const floods: Array<ReturnType<typeof flood>> = [];
  for (let i = 0; i < stalledCount; i++) {
    const t = await session.open({ authority: `${STALLED_HOST}:80` });
    floods.push(flood(t, 64 * MiB));
  }
  const accepted = await plateau(() => floods.reduce((s, f) => s + f.accepted, 0));

  // Ten tunnels carry 8 MiB each on the same connection, verified by hash.
  const bodies = Array.from({ length: 10 }, (_, i) =>
    data.subarray(i * 512 * 1024, i * 512 * 1024 + 8 * MiB),
  );
  const started = Date.now();
  const results = await Promise.all(
    bodies.map(async (body) => transfer(await session.open({ authority: '10.0.0.1:80' }), body)),
  );
  const othersMs = Date.now() - started;
  for (const [i, r] of results.entries()) {
    expect(r.answer).toBe(`${createHash('sha256').update(bodies[i]!).digest('hex')} ${8 * MiB}`);
  }

  const growth = mem(); // the stalled tunnels still hold what they buffered
  const serverBuffered = stalled.map((t) => t.readableLength + t.stream.readableLength);
  return { session, floods, stalled, accepted, growth, othersMs, serverBuffered };
}

describe('one stalled tunnel on a busy connection', () => {
  it('ten other tunnels each carry 8 MiB (hash-verified) while one tunnel is not read', async () => {
    const r = await scenario(1);
    report('1 stalled + 10 x 8 MiB', {
      acceptedIntoStalledBytes: r.accepted,
      othersMs: r.othersMs,
      serverBufferedJsBytes: r.serverBuffered,
      ...r.growth,
    });
    // Backpressure stopped the client within the stream window (+ its own 64 KiB tunnel buffer,
    // node's stream buffer and one chunk in flight): far below the 64 MiB it tried to send.
    expect(r.accepted).toBeGreaterThanOrEqual(INITIAL_STREAM_WINDOW_BYTES - 64 * 1024);
    expect(r.accepted).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW_BYTES + MiB);
    expect(r.floods[0]!.error).toBeUndefined();
    // On the server the stalled tunnel holds exactly one stream window of data...
    expect(r.serverBuffered[0]).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW_BYTES + 64 * 1024);
    // ...which retains more than 4 MiB of memory: its chunks are slices of the connection's read
    // buffers, and a slice keeps its whole buffer alive (measured 10-12 MiB). A connection that
    // carried the same traffic without a stalled tunnel retains ~0 MiB.
    expect(r.growth.heapUsedMiB + r.growth.arrayBuffersMiB).toBeLessThan(24);
    // The stalled tunnel still works once its reader comes back: every byte it was sent arrives.
    const server = r.stalled[0]!;
    let got = 0;
    const ended = new Promise((resolve) => server.once('end', resolve));
    server.on('data', (c: Buffer) => {
      got += c.length;
    });
    r.floods[0]!.stop();
    await ended;
    expect(got).toBe(r.floods[0]!.accepted);
  });

  it('ten stalled tunnels cost about ten stream windows, and still do not hold up the others', async () => {
    const r = await scenario(10);
    const perStalled = r.accepted / 10;
    report('10 stalled + 10 x 8 MiB', {
      acceptedIntoStalledBytes: r.accepted,
      perStalledBytes: perStalled,
      othersMs: r.othersMs,
      ...r.growth,
    });
    for (const f of r.floods) {
      expect(f.accepted).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW_BYTES + MiB);
      expect(f.error).toBeUndefined();
    }
    // Each stalled stream keeps its own window; with node's HTTP/2 the connection window does not
    // cap their sum (node returns connection credit as DATA arrives, whoever reads it).
    expect(r.growth.heapUsedMiB + r.growth.arrayBuffersMiB).toBeLessThan(10 * 4 * 2 + 24);
  });

  // Expected to fail: ztunnel's Rust h2 returns connection-window credit only as the application
  // reads, so the 16 MiB connection window caps what one connection can make it buffer. node's
  // HTTP/2 returns connection credit as DATA arrives (node_http2.cc OnDataChunkReceived calls
  // nghttp2_session_consume_connection at once; only stream credit waits for the reader), so the
  // stalled streams of one connection add up: maxConcurrentStreams (200) x 4 MiB = 800 MiB per
  // connection on the server. When a per-connection budget exists (see docs/load.md), flip to it().
  it.fails('the stalled tunnels of one connection together stay within its 16 MiB connection window', async () => {
    const { port } = await server();
    const session = await h.connect(port);
    const floods: Array<ReturnType<typeof flood>> = [];
    for (let i = 0; i < 10; i++) {
      floods.push(flood(await session.open({ authority: `${STALLED_HOST}:80` }), 64 * MiB));
    }
    const accepted = await plateau(() => floods.reduce((s, f) => s + f.accepted, 0));
    report('10 stalled, connection total', { acceptedBytes: accepted });
    expect(accepted).toBeLessThanOrEqual(INITIAL_CONNECTION_WINDOW_BYTES + MiB);
  });
});
