/**
 * Benchmark 5: memory per idle open tunnel, at 10,000 tunnels over 100 HBONE connections (100
 * per connection, ztunnel's pool limit). Both sides are measured in their own fresh processes
 * (`--expose-gc`, GC until the heap stops shrinking): per tunnel = (memory with 10,000 idle
 * tunnels - memory with the 100 connections and no tunnel) / 10,000, for RSS and V8 heap, in the
 * client process and in the server process. The baseline is the same figure for one idle raw
 * mutual-TLS connection (500 of them), measured in another fresh pair of processes so neither
 * run inherits the other's freed pages.
 *
 * This file is also the client process: `run()` forks it with `--child`.
 */
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { HboneClientSession, HboneTunnel } from '../packages/hbone/src/index.js';
import { BENCH_REQUEST, hboneDialer, rawTlsDialer } from './lib/clients.js';
import { type Creds, mintCreds, SERVER_ID } from './lib/creds.js';
import { forkTs, Rpc, ServerProcess } from './lib/peer.js';
import { type MemorySample, replyToParent, settledMemory } from './lib/protocol.js';
import { log, type ModuleReport, result } from './lib/result.js';

const CONNECTIONS = 100;
const TUNNELS_PER_CONNECTION = 100;
const TLS_CONNECTIONS = 500;
const KB10 = 10 * 1024;

type ChildRequest =
  | { id: number; cmd: 'init'; creds: Creds }
  | { id: number; cmd: 'hbone-connect'; port: number; n: number }
  | { id: number; cmd: 'hbone-open'; perConnection: number }
  | { id: number; cmd: 'tls-connect'; port: number; n: number }
  | { id: number; cmd: 'memory' }
  | { id: number; cmd: 'exit' };

// ---- the client process --------------------------------------------------------------------

async function child(): Promise<void> {
  let creds: Creds | undefined;
  const sessions: HboneClientSession[] = [];
  const tunnels: HboneTunnel[] = [];
  const sockets: unknown[] = [];
  const handle = async (req: ChildRequest): Promise<unknown> => {
    switch (req.cmd) {
      case 'init':
        creds = req.creds;
        return null;
      case 'hbone-connect': {
        const dial = hboneDialer(creds!, SERVER_ID);
        for (let i = 0; i < req.n; i += 10) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(10, req.n - i) }, () => dial(req.port)),
          );
          sessions.push(...batch);
        }
        return sessions.length;
      }
      case 'hbone-open': {
        for (let i = 0; i < sessions.length; i += 10) {
          const opened = await Promise.all(
            sessions
              .slice(i, i + 10)
              .flatMap((s) => Array.from({ length: req.perConnection }, () => s.open(BENCH_REQUEST))),
          );
          for (const t of opened) t.on('error', () => {});
          tunnels.push(...opened);
        }
        return tunnels.length;
      }
      case 'tls-connect': {
        const dial = rawTlsDialer(creds!);
        for (let i = 0; i < req.n; i += 10) {
          const batch = await Promise.all(
            Array.from({ length: Math.min(10, req.n - i) }, () => dial(req.port)),
          );
          for (const s of batch) s.on('error', () => {});
          sockets.push(...batch);
        }
        return sockets.length;
      }
      case 'memory':
        return settledMemory();
      case 'exit':
        setImmediate(() => process.exit(0));
        return null;
    }
  };
  process.on('message', (req: ChildRequest) => {
    handle(req).then(
      (value) => replyToParent({ id: req.id, ok: true, value }),
      (err: unknown) =>
        process.send?.({ id: req.id, ok: false, error: String((err as Error)?.stack ?? err) }),
    );
  });
  process.on('disconnect', () => process.exit(0));
  replyToParent({ id: 0, ok: true, value: 'ready' });
}

// ---- the orchestration (runner process) ----------------------------------------------------

interface Delta {
  readonly rss: number;
  readonly heapUsed: number;
  /** V8 heap committed: what heapUsed growth costs in pages (RSS), slack included. */
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

function perItem(before: MemorySample, after: MemorySample, n: number): Delta {
  return {
    rss: Math.round((after.rss - before.rss) / n),
    heapUsed: Math.round((after.heapUsed - before.heapUsed) / n),
    heapTotal: Math.round((after.heapTotal - before.heapTotal) / n),
    external: Math.round((after.external - before.external) / n),
    arrayBuffers: Math.round((after.arrayBuffers - before.arrayBuffers) / n),
  };
}

async function withPair<T>(creds: Creds, fn: (client: Rpc, server: ServerProcess) => Promise<T>): Promise<T> {
  const server = await ServerProcess.start(creds);
  const client = new Rpc(await forkTs(fileURLToPath(import.meta.url), ['--child']));
  try {
    await client.call<null, ChildRequest>({ cmd: 'init', creds });
    return await fn(client, server);
  } finally {
    await client.exit({ cmd: 'exit' });
    await server.stop();
  }
}

/** The server sees a connection a moment after the client does (TLS 1.3): poll, bounded. */
async function serverHolds(server: ServerProcess, what: 'connections' | 'tunnels', n: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const c = await server.counts();
    if (c[what] >= n) return;
    if (Date.now() > deadline) throw new Error(`server holds ${c[what]} ${what}, expected ${n}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function both(
  client: Rpc,
  server: ServerProcess,
): Promise<{ client: MemorySample; server: MemorySample }> {
  // One at a time: two GCs racing on two cores would each disturb the other's sample.
  const c = await client.call<MemorySample, ChildRequest>({ cmd: 'memory' });
  const s = await server.memory();
  return { client: c, server: s };
}

export async function run(): Promise<ModuleReport> {
  const creds = await mintCreds();

  const tls = await withPair(creds, async (client, server) => {
    const port = await server.listen({ proto: 'tls', mode: 'hold' });
    const m0 = await both(client, server);
    const t0 = performance.now();
    await client.call<number, ChildRequest>({ cmd: 'tls-connect', port, n: TLS_CONNECTIONS });
    log(`${TLS_CONNECTIONS} raw TLS connections in ${Math.round(performance.now() - t0)} ms`);
    await serverHolds(server, 'connections', TLS_CONNECTIONS);
    const m1 = await both(client, server);
    return {
      client: perItem(m0.client, m1.client, TLS_CONNECTIONS),
      server: perItem(m0.server, m1.server, TLS_CONNECTIONS),
    };
  });
  log(`idle raw TLS connection: client rss ${tls.client.rss} B, server rss ${tls.server.rss} B`);

  const hbone = await withPair(creds, async (client, server) => {
    const port = await server.listen({ proto: 'hbone', mode: 'hold' });
    const m0 = await both(client, server);
    const t0 = performance.now();
    await client.call<number, ChildRequest>({ cmd: 'hbone-connect', port, n: CONNECTIONS });
    log(`${CONNECTIONS} HBONE connections in ${Math.round(performance.now() - t0)} ms`);
    await serverHolds(server, 'connections', CONNECTIONS);
    const m1 = await both(client, server);
    const n = await client.call<number, ChildRequest>(
      { cmd: 'hbone-open', perConnection: TUNNELS_PER_CONNECTION },
      300_000,
    );
    log(`${n} tunnels in ${Math.round(performance.now() - t0)} ms`);
    await serverHolds(server, 'tunnels', n);
    const m2 = await both(client, server);
    return {
      tunnels: n,
      perConnection: {
        client: perItem(m0.client, m1.client, CONNECTIONS),
        server: perItem(m0.server, m1.server, CONNECTIONS),
      },
      perTunnel: { client: perItem(m1.client, m2.client, n), server: perItem(m1.server, m2.server, n) },
      samples: { m0, m1, m2 },
    };
  });
  log(
    `idle tunnel: client rss ${hbone.perTunnel.client.rss} B heap ${hbone.perTunnel.client.heapUsed} B; ` +
      `server rss ${hbone.perTunnel.server.rss} B heap ${hbone.perTunnel.server.heapUsed} B`,
  );

  const details = {
    tunnels: hbone.tunnels,
    connections: CONNECTIONS,
    perTunnelBytes: hbone.perTunnel,
    perHboneConnectionBytes: hbone.perConnection,
    perRawTlsConnectionBytes: tls,
    rawTlsConnections: TLS_CONNECTIONS,
    note: 'deltas after GC; RSS includes native memory (nghttp2, OpenSSL), heapUsed is the V8 heap only',
  };
  const target = { of: 'value', op: '<=', value: KB10, source: 'issue-3' } as const;
  const mk = (side: 'client' | 'server', what: 'rss' | 'heapUsed') =>
    result({
      name: `idle-tunnel-${what === 'rss' ? 'rss' : 'heap'}-${side}`,
      value: hbone.perTunnel[side][what],
      unit: 'bytes',
      baseline: tls[side][what],
      baselineName: `${what} per idle raw mutual-TLS connection (${side})`,
      target,
      details,
    });
  return {
    results: [mk('client', 'rss'), mk('client', 'heapUsed'), mk('server', 'rss'), mk('server', 'heapUsed')],
  };
}

if (process.argv.includes('--child')) void child();
