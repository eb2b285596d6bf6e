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
  CLAMPED_STREAM_WINDOW_BYTES,
  type HboneServerOptions,
  type HboneTunnel,
  INBOUND_BUDGET_BYTES,
  INITIAL_STREAM_WINDOW_BYTES,
} from '../src/index.js';
import { settle } from './fixtures.js';
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
async function server(extra: Partial<HboneServerOptions> = {}) {
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
  }, extra);
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

async function scenario(stalledCount: number, extra: Partial<HboneServerOptions> = {}) {
  const { port, stalled } = await server(extra);
  const session = await h.connect(port);
  const mem = memoryWatch();

  // The stalled tunnels: the client pushes up to 64 MiB into each; backpressure must stop it.
  const floods: Array<ReturnType<typeof flood>> = [];
  for (let i = 0; i < stalledCount; i++) {
    const t = await session.open({ authority: `${STALLED_HOST}:80` });
    floods.push(flood(t, 64 * MiB));
  }
  const accepted = await settle(() => floods.reduce((s, f) => s + f.accepted, 0), {
    maxMs: 10_000,
    pollMs: 25,
  });

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

  it('without the inbound budget, ten stalled tunnels cost ten stream windows and still do not hold up the others', async () => {
    const r = await scenario(10, { inboundBudgetBytes: 0 });
    const perStalled = r.accepted / 10;
    report('10 stalled + 10 x 8 MiB, no budget', {
      acceptedIntoStalledBytes: r.accepted,
      perStalledBytes: perStalled,
      serverHeldBytes: sum(r.serverBuffered),
      othersMs: r.othersMs,
      ...r.growth,
    });
    for (const f of r.floods) {
      expect(f.accepted).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW_BYTES + MiB);
      expect(f.error).toBeUndefined();
    }
    // Each stalled stream keeps its own window; with node's HTTP/2 the connection window does not
    // cap their sum (node returns connection credit as DATA arrives, whoever reads it).
    expect(sum(r.serverBuffered)).toBeGreaterThan(9 * INITIAL_STREAM_WINDOW_BYTES);
    expect(r.growth.heapUsedMiB + r.growth.arrayBuffersMiB).toBeLessThan(10 * 4 * 2 + 24);
  });

  // ztunnel's Rust h2 returns connection-window credit only as the application reads, so the
  // 16 MiB connection window caps what one connection can make it buffer. node's HTTP/2 returns
  // connection credit as DATA arrives (node_http2.cc OnDataChunkReceived), so without the inbound
  // budget the stalled streams add up to maxConcurrentStreams (200) x 4 MiB = 800 MiB. The budget
  // (inbound-budget.ts) shrinks every stream window to 16 KiB once the connection holds 16 MiB.
  // What the peer sent before it read our SETTINGS still lands: the streams it had opened by then
  // keep what they took of their 4 MiB windows (measured 1-4 such streams: 19-32 MiB in all on
  // Node 20 and 22), and each stream opened after that fills its 16 KiB.
  const IN_FLIGHT_SLACK = 6 * INITIAL_STREAM_WINDOW_BYTES;

  it('with the inbound budget, ten stalled tunnels hold about 16 MiB and the others still finish', async () => {
    const r = await scenario(10);
    report('10 stalled + 10 x 8 MiB, 16 MiB budget', {
      acceptedIntoStalledBytes: r.accepted,
      serverHeldBytes: sum(r.serverBuffered),
      othersMs: r.othersMs,
      ...r.growth,
    });
    for (const f of r.floods) expect(f.error).toBeUndefined();
    expect(sum(r.serverBuffered)).toBeGreaterThanOrEqual(INBOUND_BUDGET_BYTES);
    expect(sum(r.serverBuffered)).toBeLessThanOrEqual(INBOUND_BUDGET_BYTES + IN_FLIGHT_SLACK);
    // Every stalled tunnel still delivers every byte once its reader comes back.
    await Promise.all(
      r.stalled.map(async (t, i) => {
        let got = 0;
        const ended = new Promise((resolve) => t.once('end', resolve));
        t.on('data', (c: Buffer) => {
          got += c.length;
        });
        r.floods[i]!.stop();
        await ended;
        expect(got).toBe(r.floods[i]!.accepted);
      }),
    );
  });

  it('one hundred stalled tunnels on one connection hold about 16 MiB, not 100 x 4 MiB', async () => {
    const { port, stalled } = await server();
    const session = await h.connect(port);
    const floods: Array<ReturnType<typeof flood>> = [];
    for (let i = 0; i < 100; i++) {
      floods.push(flood(await session.open({ authority: `${STALLED_HOST}:80` }), 64 * MiB));
    }
    const held = (): number => sum(stalled.map((t) => t.readableLength + t.stream.readableLength));
    await settle(() => floods.reduce((s, f) => s + f.accepted, 0), { maxMs: 10_000, pollMs: 25 });
    report('100 stalled, connection total', { serverHeldBytes: held() });
    expect(stalled).toHaveLength(100);
    expect(held()).toBeGreaterThanOrEqual(INBOUND_BUDGET_BYTES);
    expect(held()).toBeLessThanOrEqual(
      INBOUND_BUDGET_BYTES + 100 * CLAMPED_STREAM_WINDOW_BYTES + IN_FLIGHT_SLACK,
    );
    // A new tunnel on the same connection still works (in 16 KiB steps while the budget holds).
    const body = data.subarray(0, 2 * MiB);
    const { answer } = await transfer(await session.open({ authority: '10.0.0.1:80' }), body);
    expect(answer).toBe(`${createHash('sha256').update(body).digest('hex')} ${2 * MiB}`);
  });
});

function sum(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0);
}
