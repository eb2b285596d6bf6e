/**
 * Pool benchmark (issue 4): 10,000 tunnels over 50 keys opened concurrently through one
 * `@hbone/pool`, against HBONE servers in a separate process.
 * - dials made, against the minimum: per key ceil(tunnels per key / 100 streams per connection);
 * - open latency p50/p99 through the pool, against opening each tunnel on a fresh connection
 *   (connect + open, measured with the same concurrency cap on a sample);
 * - tunnels per second for the whole burst.
 */
import { performance } from 'node:perf_hooks';
import { connect, type HboneTunnel } from '../packages/hbone/src/index.js';
import { createPool } from '../packages/pool/src/index.js';
import { CLIENT_ID, mintCreds, SERVER_ID, sourcesFor } from './lib/creds.js';
import { withServer } from './lib/peer.js';
import { log, type ModuleReport, result, round } from './lib/result.js';
import { summarize } from './lib/stats.js';

const KEYS = 50;
const TUNNELS = 10_000;
const STREAMS_PER_CONNECTION = 100;
/** Fresh-connection baseline sample: enough for a p99, bounded in time. */
const FRESH_SAMPLE = 300;
const FRESH_CONCURRENCY = 8;
const DEADLINE_MS = 60_000;

export async function run(): Promise<ModuleReport> {
  const creds = await mintCreds();
  const client = sourcesFor(creds, creds.client);
  return withServer(creds, async (server) => {
    const ports: number[] = [];
    for (let i = 0; i < KEYS; i++) ports.push(await server.listen({ proto: 'hbone', mode: 'accept' }));
    const keyOf = (i: number) => ({
      source: CLIENT_ID,
      destinations: [SERVER_ID],
      address: { host: '127.0.0.1', port: ports[i % KEYS]! },
    });

    // 1. The burst through the pool.
    const pool = createPool({
      credentials: () => client,
      config: {
        maxStreamsPerConnection: STREAMS_PER_CONNECTION,
        maxQueuedPerKey: TUNNELS,
        openTimeoutMs: DEADLINE_MS,
      },
      clientOptions: { pingIntervalMs: 0 },
    });
    const latencies: number[] = [];
    const tunnels: HboneTunnel[] = [];
    let failed = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: TUNNELS }, async (_, i) => {
        const t0 = performance.now();
        try {
          const t = await pool.open(keyOf(i), { authority: `127.0.0.1:${8000 + (i % 1000)}` });
          latencies.push(performance.now() - t0);
          t.on('error', () => {});
          tunnels.push(t);
        } catch {
          failed++;
        }
      }),
    );
    const burstMs = performance.now() - started;
    const stats = pool.stats();
    const minDials = KEYS * Math.ceil(TUNNELS / KEYS / STREAMS_PER_CONNECTION);
    log(
      `pool: ${tunnels.length} tunnels in ${Math.round(burstMs)} ms, ${stats.dials} dials (min ${minDials})`,
    );
    for (const t of tunnels) t.destroy();
    await pool.destroy();

    // 2. The baseline: each tunnel on a fresh connection (connect + open), a bounded sample.
    const fresh: number[] = [];
    let next = 0;
    const freshStarted = performance.now();
    const worker = async (): Promise<void> => {
      while (next < FRESH_SAMPLE && performance.now() - freshStarted < DEADLINE_MS) {
        const i = next++;
        const t0 = performance.now();
        const session = await connect(keyOf(i).address, {
          ...client,
          expectedIdentities: [SERVER_ID],
          pingIntervalMs: 0,
        });
        const t = await session.open({ authority: '127.0.0.1:8000' });
        fresh.push(performance.now() - t0);
        t.on('error', () => {});
        session.destroy();
      }
    };
    await Promise.all(Array.from({ length: FRESH_CONCURRENCY }, worker));

    const pooled = summarize(latencies, 3);
    const direct = summarize(fresh, 3);
    return {
      results: [
        result({
          name: 'pool-dials',
          value: stats.dials,
          unit: 'dials',
          baseline: minDials,
          baselineName: `minimum (${KEYS} keys x ceil(${TUNNELS / KEYS} / ${STREAMS_PER_CONNECTION}))`,
          target: { of: 'ratio', op: '<=', value: 1, source: 'issue-3' },
          details: { tunnels: tunnels.length, failed, keys: KEYS, liveConnections: stats.liveConnections },
        }),
        result({
          name: 'pool-open-latency-p50',
          value: pooled.p50,
          unit: 'ms',
          baseline: direct.p50,
          baselineName: 'fresh connection + tunnel per open',
          target: null,
          details: {
            pooled,
            fresh: direct,
            note: 'all 10,000 opens start at once; latency includes queueing',
          },
        }),
        result({
          name: 'pool-open-latency-p99',
          value: pooled.p99,
          unit: 'ms',
          baseline: direct.p99,
          baselineName: 'fresh connection + tunnel per open',
          target: null,
        }),
        result({
          name: 'pool-tunnels-per-second',
          value: round((tunnels.length / burstMs) * 1000, 1),
          unit: 'tunnels/s',
          baseline: round((fresh.length / (fresh.reduce((a, b) => a + b, 0) / FRESH_CONCURRENCY)) * 1000, 1),
          baselineName: `fresh connection per tunnel, ${FRESH_CONCURRENCY} at a time`,
          target: null,
          details: { burstMs: round(burstMs, 1) },
        }),
      ],
    };
  });
}
