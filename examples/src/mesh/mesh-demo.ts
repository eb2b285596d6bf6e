/**
 * The two-cluster demo of the first seed, in one process on loopback addresses: generated CAs
 * for two trust domains (each cluster trusts the other's bundle), the mesh read from YAML, and
 * the path cart pod -> ztunnel-east -> WAN -> east-west gateway (west) -> ztunnel-west -> checkout
 * pod, then an L7 request through a waypoint. It prints the seed's hop table filled with what
 * each hop observed (component, protocol in/out, peer identity, SNI, ALPN, authority, baggage,
 * bytes) — every cell read from live objects — and exits 0 when the bytes came back intact and
 * the waypoint allowed GET and denied DELETE. Bounded: it gives up after 20 s.
 *
 * Run: `node --conditions=@hbone/source --import tsx examples/src/mesh/mesh-demo.ts`.
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { pathToFileURL } from 'node:url';
import { readClientHello } from '@hbone/hbone';
import { X509Bundle } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';
import { parse as parseYaml } from 'yaml';
import { type MeshConfig, validateConfig, type WorkloadConfig } from './config.js';
import { EastWestGateway } from './east-west-gateway.js';
import type { HopObservation } from './hop-observation.js';
import { NodeProxy } from './node-proxy.js';
import { socks5Connect } from './socks5.js';
import { Waypoint } from './waypoint.js';
import { CaIdentities } from './workload-identities.js';

export const DEMO_BASE = '127.60.0';
const DEADLINE_MS = 20_000;

/** The mesh both clusters share, as a control plane would push it. */
export function demoMeshYaml(base = DEMO_BASE): string {
  return `
clusters:
  - { name: cluster-east, network: network-east, trustDomain: east.local }
  - { name: cluster-west, network: network-west, trustDomain: west.local }
workloads:
  - { name: cart, namespace: payments, serviceAccount: cart, ip: ${base}.10, node: node-east-1,
      cluster: cluster-east, locality: us-east-2/us-east-2a, labels: { app: cart, version: v1 }, workloadKind: pod }
  - { name: reviews, namespace: payments, serviceAccount: reviews, ip: ${base}.50, node: node-east-2,
      cluster: cluster-east, labels: { app: reviews } }
  - { name: checkout, namespace: payments, serviceAccount: checkout, ip: ${base}.30, node: node-west-3,
      cluster: cluster-west, locality: us-west-1/us-west-1b, labels: { app: checkout } }
services:
  - { name: checkout, namespace: payments, vip: ${base}.130, ports: [{ port: 8080 }], endpoints: [checkout] }
  - { name: reviews, namespace: payments, vip: ${base}.150, ports: [{ port: 9080 }], endpoints: [reviews],
      waypoint: reviews-waypoint }
gateways:
  # The LoadBalancer address ztunnel-east dials; the gateway pod listens behind it.
  - { name: eastwest-west, network: network-west, address: ${base}.5, port: 15008,
      identity: spiffe://west.local/ns/istio-eastwest/sa/eastwest, sni: source-identity }
waypoints:
  - { name: reviews-waypoint, network: network-east, address: ${base}.6,
      identity: spiffe://east.local/ns/payments/sa/reviews-waypoint }
policies:
  - name: checkout-from-cart
    namespace: payments
    selector: { matchLabels: { app: checkout } }
    action: ALLOW
    rules: [{ from: [{ principals: [east.local/ns/payments/sa/cart] }], to: [{ ports: [8080] }] }]
  - name: reviews-read-only
    namespace: payments
    targetRef: { kind: Service, name: reviews }
    action: ALLOW
    rules: [{ from: [{ namespaces: [payments] }], to: [{ methods: [GET], paths: [/reviews/*] }] }]
peerAuthentication: { mode: STRICT }
`;
}

/** `demoMeshYaml` parsed: the `mesh` section to give `validateConfig`. */
export function demoMeshDocument(base = DEMO_BASE): unknown {
  return parseYaml(demoMeshYaml(base)) as unknown;
}

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

interface Row {
  hop: string;
  component: string;
  where: string;
  protocol: string;
  peer: string;
  sni: string;
  alpn: string;
  authority: string;
  bytes: string;
  baggage: string;
}

function where(w: WorkloadConfig | undefined, extra = ''): string {
  return w ? `${w.cluster} · ${w.namespace} · ${w.node}${extra}` : extra;
}

function fromObservation(hop: string, o: HopObservation | undefined, component: string, at: string): Row {
  if (!o) {
    return {
      hop,
      component,
      where: at,
      protocol: '(nothing observed)',
      peer: '',
      sni: '',
      alpn: '',
      authority: '',
      bytes: '',
      baggage: '',
    };
  }
  return {
    hop,
    component,
    where: at,
    protocol: `${o.protocolIn} / ${o.protocolOut}`,
    peer: o.peerIdentity ?? '—',
    sni: o.sni ?? '(none)',
    alpn: o.alpn ?? '—',
    authority: o.authority ?? '—',
    bytes: `${o.bytesToDst} → / ← ${o.bytesToSrc}${o.error ? ` (${o.error})` : ''}`,
    baggage: o.baggage ?? '',
  };
}

function table(rows: Row[]): string {
  const cols: Array<[keyof Row, string]> = [
    ['hop', 'Hop'],
    ['component', 'Component'],
    ['where', 'Where it runs'],
    ['protocol', 'Protocol in / out'],
    ['peer', 'Peer identity (verified)'],
    ['sni', 'SNI'],
    ['alpn', 'ALPN'],
    ['authority', 'CONNECT authority'],
    ['bytes', 'Bytes to dst / to src'],
  ];
  const widths = cols.map(([k, h]) => Math.max(h.length, ...rows.map((r) => r[k].length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(cols.map(([, h]) => h)), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`];
  for (const r of rows) out.push(line(cols.map(([k]) => r[k])));
  const bag = rows
    .filter((r) => r.baggage)
    .map((r) => `  baggage seen at hop ${r.hop} (${r.component}): ${r.baggage}`);
  return [...out, '', ...bag].join('\n');
}

/** A TCP relay standing for the WAN and the cloud load balancer: counts bytes, reads the (clear) SNI. */
async function wanRelay(listen: { host: string; port: number }, target: { host: string; port: number }) {
  const seen = { connections: 0, toGateway: 0, toClient: 0, sni: [] as string[] };
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true }, (c) => {
    sockets.add(c);
    c.once('close', () => sockets.delete(c));
    c.on('error', () => {});
    seen.connections++;
    void readClientHello(c).then(
      (hello) => {
        if (hello.sni) seen.sni.push(hello.sni);
        const u = net.connect({ ...target, allowHalfOpen: true });
        sockets.add(u);
        u.once('close', () => sockets.delete(u));
        u.on('error', () => c.destroy());
        c.on('data', (d: Buffer) => {
          seen.toGateway += d.length;
        });
        u.on('data', (d: Buffer) => {
          seen.toClient += d.length;
        });
        c.pipe(u);
        u.pipe(c);
      },
      () => c.destroy(),
    );
  });
  await new Promise<void>((r, j) => {
    server.once('error', j);
    server.listen(listen.port, listen.host, () => r());
  });
  return {
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** Runs the demo; resolves with the exit status. `out` receives the report. */
export async function runMeshDemo(opts: { base?: string; out?: (s: string) => void } = {}): Promise<number> {
  const base = opts.base ?? DEMO_BASE;
  const out = opts.out ?? ((s: string) => process.stdout.write(s));
  const closers: Array<() => Promise<void> | void> = [];
  const closeAll = async (): Promise<void> => {
    for (const c of closers.splice(0).reverse()) {
      try {
        await c();
      } catch {
        // teardown goes on
      }
    }
  };
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<number>((resolve) => {
    timer = setTimeout(() => {
      out(`mesh demo: gave up after ${DEADLINE_MS} ms\n`);
      resolve(1);
    }, DEADLINE_MS);
    timer.unref();
  });
  try {
    return await Promise.race([deadline, demo(base, out, closers)]);
  } catch (err) {
    out(`mesh demo: FAILED: ${(err as Error).message}\n`);
    return 1;
  } finally {
    clearTimeout(timer);
    await closeAll();
  }
}

async function demo(
  base: string,
  out: (s: string) => void,
  closers: Array<() => Promise<void> | void>,
): Promise<number> {
  const meshDoc = parseYaml(demoMeshYaml(base)) as unknown;
  const cfg = (section: Record<string, unknown>) => validateConfig({ mesh: meshDoc, ...section });
  const [eastCa, westCa] = await Promise.all([TestCa.create('east.local'), TestCa.create('west.local')]);
  const bundle = (ca: TestCa): X509Bundle => X509Bundle.fromPem(ca.trustDomain, ca.bundlePem);
  const eastIds = (): CaIdentities => new CaIdentities([eastCa], [bundle(westCa)]);
  const westIds = (): CaIdentities => new CaIdentities([westCa], [bundle(eastCa)]);
  const timeouts = { handshakeMs: 5000, connectMs: 5000 };
  const proxy = async (name: string, node: string, host: number, cluster: string, ids: CaIdentities) => {
    const c = cfg({ proxy: { name, node, address: `${base}.${host}`, cluster, timeouts } });
    if (c.kind !== 'proxy') throw new Error('unreachable');
    const p = await NodeProxy.start({ mesh: c.mesh, proxy: c.proxy, identities: ids });
    closers.push(() => p.close());
    return p;
  };
  const gwCfg = cfg({
    gateway: {
      name: 'eastwest-west',
      acceptTrustDomains: ['east.local', 'west.local'],
      sniRouting: 'require',
      listen: { address: `${base}.7`, port: 15008 },
      timeouts,
    },
  });
  const wpCfg = cfg({ waypoint: { name: 'reviews-waypoint', timeouts } });
  if (gwCfg.kind !== 'gateway' || wpCfg.kind !== 'waypoint') throw new Error('unreachable');
  const mesh: MeshConfig = gwCfg.mesh;
  const wl = (name: string) => mesh.workloads.find((w) => w.name === name)!;

  // The pods' applications: checkout echoes TCP, reviews answers HTTP.
  const checkoutSeen = { peer: '', bytesIn: 0, bytesOut: 0, hash: createHash('sha256') };
  const checkoutApp = net.createServer({ allowHalfOpen: true }, (s) => {
    checkoutSeen.peer = `${s.remoteAddress}:${s.remotePort}`;
    s.on('data', (d: Buffer) => {
      checkoutSeen.bytesIn += d.length;
      checkoutSeen.hash.update(d);
      checkoutSeen.bytesOut += d.length;
    });
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => checkoutApp.listen(8080, wl('checkout').ip, () => r()));
  closers.push(() => new Promise<void>((r) => checkoutApp.close(() => r())));
  const reviewsSeen: string[] = [];
  const reviewsApp = http.createServer((req, res) => {
    reviewsSeen.push(`${req.method} ${req.url} from ${req.socket.remoteAddress}`);
    res.end(JSON.stringify({ review: 'five stars', path: req.url }));
  });
  await new Promise<void>((r) => reviewsApp.listen(9080, wl('reviews').ip, () => r()));
  closers.push(
    () =>
      new Promise<void>((r) => {
        reviewsApp.close(() => r());
        reviewsApp.closeAllConnections();
      }),
  );

  const east = await proxy('ztunnel-east', 'node-east-1', 2, 'cluster-east', eastIds());
  const east2 = await proxy('ztunnel-east-2', 'node-east-2', 3, 'cluster-east', eastIds());
  const west = await proxy('ztunnel-west', 'node-west-3', 4, 'cluster-west', westIds());
  const gateway = await EastWestGateway.start({
    mesh,
    gateway: gwCfg.gateway,
    identities: westIds(),
    captureBytes: 8 << 20,
  });
  closers.push(() => gateway.close());
  const waypoint = await Waypoint.start({ mesh, waypoint: wpCfg.waypoint, identities: eastIds() });
  closers.push(() => waypoint.close());
  const gwEntry = mesh.gateways[0]!;
  const wan = await wanRelay(
    { host: gwEntry.address, port: gwEntry.port },
    { host: `${base}.7`, port: 15008 },
  );
  closers.push(() => wan.close());

  // The cart pod opens a plain TCP connection to checkout (SOCKS5 stands in for the CNI redirect).
  const marker = Buffer.from('cart->checkout: order #1234, card 4111-1111-1111-1111');
  const data = Buffer.concat([marker, randomBytes(256 * 1024), marker]);
  const cart = wl('cart');
  const sock = await socks5Connect({
    proxy: { host: east.config.address, port: east.port('socks5')! },
    destination: { host: 'checkout.payments.svc.cluster.local', port: 8080 },
    localAddress: cart.ip,
  });
  closers.push(() => {
    sock.destroy();
  });
  const chunks: Buffer[] = [];
  sock.on('data', (c: Buffer) => chunks.push(c));
  const ended = new Promise<void>((r) => sock.once('end', () => r()));
  sock.end(data);
  await ended;
  const back = Buffer.concat(chunks);
  const waitObs = async (): Promise<void> => {
    for (
      let i = 0;
      i < 200 &&
      (west.observations.items.length === 0 ||
        gateway.observations.items.length === 0 ||
        east.observations.items.length === 0);
      i++
    ) {
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  await waitObs();

  // An L7 request through the waypoint: GET allowed, DELETE denied by the L7 rule.
  const l7 = async (method: string, path: string): Promise<number> => {
    const stream = await east.connectOutbound({
      src: cart.ip,
      dst: `${mesh.services.find((x) => x.name === 'reviews')!.vip}:9080`,
    });
    return new Promise<number>((resolve, reject) => {
      const req = http.request(
        {
          method,
          path,
          host: 'reviews.payments.svc.cluster.local',
          createConnection: () => stream as net.Socket,
        },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('error', reject);
      req.end();
    });
  };
  const getStatus = await l7('GET', '/reviews/1');
  const deleteStatus = await l7('DELETE', '/reviews/1');
  for (let i = 0; i < 200 && east2.observations.items.length === 0; i++)
    await new Promise((r) => setTimeout(r, 10));

  const checkout = wl('checkout');
  const eastObs = east.observations.items.find((o) => o.protocolIn === 'TCP (SOCKS5)');
  const rows: Row[] = [
    {
      hop: '—',
      component: 'cart pod',
      where: where(cart),
      protocol: 'app TCP / app TCP',
      peer: '—',
      sni: '—',
      alpn: '—',
      authority: '—',
      bytes: `${data.length} → / ← ${back.length}`,
      baggage: '',
    },
    fromObservation('1', eastObs, 'ztunnel-east', `cluster-east · node-east-1 · ${east.config.address}`),
    {
      hop: '2',
      component: 'WAN / load balancer',
      where: `${gwEntry.address}:${gwEntry.port} -> ${base}.7:15008`,
      protocol: 'HBONE / HBONE',
      peer: '(cannot see inside TLS)',
      sni: wan.seen.sni[0] ?? '(none)',
      alpn: '—',
      authority: '—',
      bytes: `${wan.seen.toGateway} → / ← ${wan.seen.toClient}`,
      baggage: '',
    },
    fromObservation(
      '3',
      gateway.observations.items[0],
      'east-west gateway',
      `network-west · ${base}.7 (LB ${gwEntry.address})`,
    ),
    fromObservation(
      '4',
      west.observations.items[0],
      'ztunnel-west',
      `cluster-west · node-west-3 · ${west.config.address}`,
    ),
    {
      hop: '—',
      component: 'checkout pod',
      where: where(checkout),
      protocol: 'app TCP / app TCP',
      peer: `source ${checkoutSeen.peer}`,
      sni: '—',
      alpn: '—',
      authority: '—',
      bytes: `${checkoutSeen.bytesIn} → / ← ${checkoutSeen.bytesOut}`,
      baggage: '',
    },
  ];
  const l7Rows: Row[] = [
    fromObservation(
      '1',
      east.observations.items.find((o) => o.protocolOut.startsWith('HBONE to waypoint')),
      'ztunnel-east',
      'cluster-east · node-east-1',
    ),
    ...waypoint.observations.items
      .filter((o) => o.role === 'waypoint')
      .map((o, i) =>
        fromObservation(
          `2${'ab'[i] ?? ''}`,
          o,
          'reviews-waypoint',
          `network-east · ${waypoint.config.address}`,
        ),
      ),
    fromObservation('3', east2.observations.items[0], 'ztunnel-east-2', 'cluster-east · node-east-2'),
    {
      hop: '—',
      component: 'reviews pod',
      where: where(wl('reviews')),
      protocol: 'app HTTP/1.1',
      peer: reviewsSeen.join('; ') || '(no request reached it)',
      sni: '—',
      alpn: '—',
      authority: '—',
      bytes: '',
      baggage: '',
    },
  ];
  const intact = sha256(back) === sha256(data);
  const forwarded = gateway.captured();
  const sawPlaintext = forwarded.includes(marker);
  out(`\nHBONE across two clusters: cart (east.local) -> checkout (west.local), ${data.length} bytes\n\n`);
  out(`${table(rows)}\n\n`);
  out(`L7 through the waypoint: GET /reviews/1 -> ${getStatus}, DELETE /reviews/1 -> ${deleteStatus}\n\n`);
  out(`${table(l7Rows)}\n\n`);
  out(`echo intact (sha256 ${sha256(back).slice(0, 16)}…): ${intact ? 'yes' : 'NO'}\n`);
  out(
    `gateway forwarded ${forwarded.length} bytes and never the application's: ${sawPlaintext ? 'NO, it saw plaintext' : 'yes'}\n`,
  );
  out(`access log at ztunnel-west: ${JSON.stringify(west.accessLog.entries[0] ?? {})}\n`);
  const ok = intact && !sawPlaintext && getStatus === 200 && deleteStatus === 403;
  out(ok ? '\nmesh demo: OK\n' : '\nmesh demo: FAILED\n');
  return ok ? 0 : 1;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runMeshDemo().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`mesh demo: ${String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
