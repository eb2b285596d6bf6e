/**
 * The mesh's full path against its parts (issue 5, "Proof"): throughput and added latency of
 * cart pod -> SOCKS5 -> ztunnel-east -> east-west gateway -> ztunnel-west -> checkout pod
 * (double HBONE), compared with a direct TCP connection and with a single HBONE hop (one tunnel,
 * `forwardHandler`). All on 127.62.0.0/24, in one process, bounded: ~15 s.
 *
 * - throughput: one connection uploads `BULK_BYTES`, the sink answers with the count at the end.
 * - latency: 1-byte echo round trips on an established connection (the connection set-up is
 *   not in it): p50/p99 per path, and the path's added p50/p99 over the baselines.
 */
import * as net from 'node:net';
import { performance } from 'node:perf_hooks';
import { validateConfig } from '../examples/src/mesh/config.js';
import { EastWestGateway } from '../examples/src/mesh/east-west-gateway.js';
import { demoMeshDocument } from '../examples/src/mesh/mesh-demo.js';
import { NodeProxy } from '../examples/src/mesh/node-proxy.js';
import { socks5Connect } from '../examples/src/mesh/socks5.js';
import { CaIdentities } from '../examples/src/mesh/workload-identities.js';
import { connect, createServer, forwardHandler } from '../packages/hbone/src/index.js';
import { X509Bundle } from '../packages/spiffe/src/index.js';
import { TestCa } from '../packages/testkit/src/index.js';

// Self-contained on purpose (the shapes of bench/lib/result.ts and stats.ts, which may move).
const log = (msg: string): void => {
  process.stderr.write(`[bench] ${msg}\n`);
};
const round = (x: number, digits = 3): number => Math.round(x * 10 ** digits) / 10 ** digits;
const mbPerSecond = (bytes: number, ms: number): number => bytes / 1e6 / (ms / 1000);

function summarize(samples: readonly number[]) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number): number =>
    s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? Number.NaN;
  return {
    n: s.length,
    min: round(s[0] ?? Number.NaN, 1),
    p50: round(at(50), 1),
    p99: round(at(99), 1),
    max: round(s.at(-1) ?? Number.NaN, 1),
  };
}

/** A figure as `pnpm bench` summarises it: value, baseline measured in the same run, ratio. */
function result(r: {
  name: string;
  value: number;
  unit: string;
  baseline: number;
  baselineName: string;
  details?: object;
}) {
  return {
    name: r.name,
    value: round(r.value),
    unit: r.unit,
    baseline: round(r.baseline),
    baselineName: r.baselineName,
    ratio: r.baseline === 0 ? Number.NaN : round(r.value / r.baseline),
    target: null,
    met: true,
    details: r.details ?? {},
  };
}

const BASE = '127.62.0';
const BULK_BYTES = 64 * 1024 * 1024;
const ROUND_TRIPS = 2000;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

type Dial = () => Promise<net.Socket | NodeJS.ReadWriteStream>;

/** Listens on `host:port`: echo (latency) or count-and-answer (throughput) depending on the first byte. */
async function sink(host: string, port: number): Promise<net.Server> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.setNoDelay(true);
    let mode: 'echo' | 'count' | undefined;
    let n = 0;
    s.on('data', (d: Buffer) => {
      mode ??= d[0] === 0x65 ? 'echo' : 'count';
      if (mode === 'echo') s.write(d);
      else n += d.length;
    });
    s.on('end', () => {
      if (mode === 'count') {
        const b = Buffer.alloc(8);
        b.writeBigUInt64BE(BigInt(n));
        s.end(b);
      } else s.end();
    });
    s.on('error', () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(port, host, () => r()));
  return server;
}

async function throughput(dial: Dial): Promise<number> {
  const s = await dial();
  const answer = new Promise<void>((resolve, reject) => {
    s.on('data', () => {});
    s.once('end', () => resolve());
    s.once('error', reject);
  });
  const t0 = performance.now();
  let sent = 0;
  while (sent < BULK_BYTES) {
    sent += CHUNK.length;
    if (!s.write(CHUNK)) await new Promise<void>((r) => s.once('drain', () => r()));
  }
  s.end();
  await answer;
  return mbPerSecond(BULK_BYTES, performance.now() - t0);
}

async function latency(dial: Dial): Promise<number[]> {
  const s = await dial();
  const samples: number[] = [];
  const one = Buffer.from('e');
  for (let i = 0; i < ROUND_TRIPS; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      s.once('data', () => resolve());
      s.write(one);
    });
    samples.push((performance.now() - t0) * 1000);
  }
  s.end();
  return samples;
}

function tcp(host: string, port: number, localAddress?: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({
      host,
      port,
      noDelay: true,
      allowHalfOpen: true,
      ...(localAddress ? { localAddress } : {}),
    });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

export async function run(): Promise<object> {
  const closers: Array<() => unknown> = [];
  try {
    const [eastCa, westCa] = await Promise.all([TestCa.create('east.local'), TestCa.create('west.local')]);
    const bundle = (ca: TestCa) => X509Bundle.fromPem(ca.trustDomain, ca.bundlePem);
    const eastIds = () => new CaIdentities([eastCa], [bundle(westCa)]);
    const westIds = () => new CaIdentities([westCa], [bundle(eastCa)]);
    const meshDoc = demoMeshDocument(BASE);
    const timeouts = { handshakeMs: 5000, connectMs: 5000 };
    const checkoutIp = `${BASE}.30`;
    const sinkServer = await sink(checkoutIp, 8080);
    closers.push(() => sinkServer.close());

    const pc = (name: string, node: string, host: number, cluster: string) => {
      const c = validateConfig({
        mesh: meshDoc,
        proxy: { name, node, address: `${BASE}.${host}`, cluster, timeouts },
      });
      if (c.kind !== 'proxy') throw new Error('unreachable');
      return c;
    };
    const ec = pc('ztunnel-east', 'node-east-1', 2, 'cluster-east');
    const east = await NodeProxy.start({ mesh: ec.mesh, proxy: ec.proxy, identities: eastIds() });
    closers.push(() => east.close());
    const wc = pc('ztunnel-west', 'node-west-3', 4, 'cluster-west');
    const west = await NodeProxy.start({ mesh: wc.mesh, proxy: wc.proxy, identities: westIds() });
    closers.push(() => west.close());
    const gc = validateConfig({
      mesh: { ...(meshDoc as Record<string, unknown>) },
      gateway: { name: 'eastwest-west', acceptTrustDomains: ['east.local', 'west.local'], timeouts },
    });
    if (gc.kind !== 'gateway') throw new Error('unreachable');
    const gw = await EastWestGateway.start({ mesh: gc.mesh, gateway: gc.gateway, identities: westIds() });
    closers.push(() => gw.close());

    // Single HBONE hop: one tunnel to a forwarding server in front of the same sink.
    const hopIds = westIds();
    const serverId = 'spiffe://west.local/ns/bench/sa/single-hop';
    const clientIds = eastIds();
    await hopIds.prepare([serverId]);
    await clientIds.prepare(['spiffe://east.local/ns/payments/sa/cart']);
    const single = createServer({
      ...hopIds.credentials(serverId),
      authorizer: () => true,
      handler: forwardHandler({ resolve: () => ({ host: checkoutIp, port: 8080 }) }),
    });
    await single.listen(15008, `${BASE}.8`);
    closers.push(() => single.destroy());
    const session = await connect(
      { host: `${BASE}.8`, port: 15008 },
      { ...clientIds.credentials('spiffe://east.local/ns/payments/sa/cart'), expectedIdentities: [serverId] },
    );
    closers.push(() => session.destroy());

    const paths: Record<string, Dial> = {
      'direct TCP': () => tcp(checkoutIp, 8080, `${BASE}.10`),
      'single HBONE hop': () => session.open({ authority: `${checkoutIp}:8080` }),
      'full mesh path (double HBONE via gateway)': () =>
        socks5Connect({
          proxy: { host: `${BASE}.2`, port: east.port('socks5')! },
          destination: { host: 'checkout.payments.svc.cluster.local', port: 8080 },
          localAddress: `${BASE}.10`,
        }),
    };
    const figures: Record<string, { mbPerS: number; latencyUs: ReturnType<typeof summarize> }> = {};
    for (const [name, dial] of Object.entries(paths)) {
      await throughput(dial); // warm-up (and the pooled connections for the mesh path)
      const mbPerS = await throughput(dial);
      const latencyUs = summarize(await latency(dial));
      figures[name] = { mbPerS: round(mbPerS, 1), latencyUs };
      log(`  ${name}: ${round(mbPerS, 1)} MB/s, round trip p50 ${latencyUs.p50} µs p99 ${latencyUs.p99} µs`);
    }
    const direct = figures['direct TCP']!;
    const hop = figures['single HBONE hop']!;
    const full = figures['full mesh path (double HBONE via gateway)']!;
    const results = [
      result({
        name: 'mesh-path throughput vs single HBONE hop',
        value: full.mbPerS,
        unit: 'MB/s',
        baseline: hop.mbPerS,
        baselineName: 'single HBONE hop',
        details: { directTcpMBps: direct.mbPerS, bulkBytes: BULK_BYTES },
      }),
      result({
        name: 'mesh-path added latency p50 vs direct TCP',
        value: full.latencyUs.p50 - direct.latencyUs.p50,
        unit: 'µs',
        baseline: hop.latencyUs.p50 - direct.latencyUs.p50,
        baselineName: 'single HBONE hop, added over direct TCP',
        details: { roundTrips: ROUND_TRIPS },
      }),
      result({
        name: 'mesh-path added latency p99 vs direct TCP',
        value: full.latencyUs.p99 - direct.latencyUs.p99,
        unit: 'µs',
        baseline: hop.latencyUs.p99 - direct.latencyUs.p99,
        baselineName: 'single HBONE hop, added over direct TCP',
        details: { roundTrips: ROUND_TRIPS },
      }),
    ];
    return { results, figures, pool: east.pool.stats().dials };
  } finally {
    for (const c of closers.reverse()) {
      try {
        await c();
      } catch {
        // teardown goes on
      }
    }
  }
}
