/**
 * The first seed's two clusters, on one /24 of loopback addresses per test file (`base`, e.g.
 * '127.61.1'): every pod, proxy, gateway and waypoint has its own IP there.
 *
 *   cluster-east (network-east, east.local)       cluster-west (network-west, west.local)
 *   node-east-1: ztunnel-east .2, cart .10         node-west-3: ztunnel-west .4, checkout .30
 *   node-east-2: ztunnel-east-2 .3,                gateway eastwest-west .5
 *     inventory .20, reviews .50, legacy (TCP) .40
 *   waypoint reviews-waypoint .6
 *   VIPs: inventory .120, checkout .130, legacy .140, reviews .150
 */
import { createHash, randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as net from 'node:net';
import { X509Bundle } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';
import { type MeshConfig, proxySection, readMesh } from '../src/mesh/config.js';
import { EastWestGateway } from '../src/mesh/east-west-gateway.js';
import { NodeProxy } from '../src/mesh/node-proxy.js';
import { Waypoint } from '../src/mesh/waypoint.js';
import { CaIdentities } from '../src/mesh/workload-identities.js';

export const EAST_TD = 'east.local';
export const WEST_TD = 'west.local';
export const CART_ID = `spiffe://${EAST_TD}/ns/payments/sa/cart`;
export const INVENTORY_ID = `spiffe://${EAST_TD}/ns/payments/sa/inventory`;
export const REVIEWS_ID = `spiffe://${EAST_TD}/ns/payments/sa/reviews`;
export const CHECKOUT_ID = `spiffe://${WEST_TD}/ns/payments/sa/checkout`;
export const GATEWAY_ID = `spiffe://${WEST_TD}/ns/istio-eastwest/sa/eastwest`;
export const WAYPOINT_ID = `spiffe://${EAST_TD}/ns/payments/sa/reviews-waypoint`;

export const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
export const payload = (n: number): Buffer => randomBytes(n);

export interface Addresses {
  ztunnelEast: string;
  ztunnelEast2: string;
  ztunnelWest: string;
  gateway: string;
  waypoint: string;
  cart: string;
  inventory: string;
  checkout: string;
  legacy: string;
  reviews: string;
  inventoryVip: string;
  checkoutVip: string;
  legacyVip: string;
  reviewsVip: string;
  /** Free addresses for a test's own needs. */
  spare: (n: number) => string;
}

export function addresses(base: string): Addresses {
  const a = (n: number): string => `${base}.${n}`;
  return {
    ztunnelEast: a(2),
    ztunnelEast2: a(3),
    ztunnelWest: a(4),
    gateway: a(5),
    waypoint: a(6),
    cart: a(10),
    inventory: a(20),
    checkout: a(30),
    legacy: a(40),
    reviews: a(50),
    inventoryVip: a(120),
    checkoutVip: a(130),
    legacyVip: a(140),
    reviewsVip: a(150),
    spare: (n) => a(200 + n),
  };
}

export interface MeshOverrides {
  policies?: unknown[];
  peerAuthentication?: 'STRICT' | 'PERMISSIVE';
  /** Extra services (raw objects). */
  services?: unknown[];
  /** Replace the west gateway's address/port (e.g. a fault proxy). */
  gatewayAddress?: { address: string; port: number };
  gatewaySni?: 'none' | 'source-identity';
  /** Give the east cluster a different trust domain (mismatch tests). */
  eastTrustDomain?: string;
}

/** The seed's mesh as a raw object, validated by `readMesh` like a YAML file would be. */
export function seedMeshObject(base: string, o: MeshOverrides = {}): Record<string, unknown> {
  const ip = addresses(base);
  return {
    clusters: [
      { name: 'cluster-east', network: 'network-east', trustDomain: o.eastTrustDomain ?? EAST_TD },
      { name: 'cluster-west', network: 'network-west', trustDomain: WEST_TD },
    ],
    workloads: [
      {
        name: 'cart',
        namespace: 'payments',
        serviceAccount: 'cart',
        ip: ip.cart,
        node: 'node-east-1',
        cluster: 'cluster-east',
        locality: 'us-east-2/us-east-2a',
        labels: { app: 'cart' },
      },
      {
        name: 'inventory',
        namespace: 'payments',
        serviceAccount: 'inventory',
        ip: ip.inventory,
        node: 'node-east-2',
        cluster: 'cluster-east',
        labels: { app: 'inventory' },
        appPort: 7070,
      },
      {
        name: 'reviews',
        namespace: 'payments',
        serviceAccount: 'reviews',
        ip: ip.reviews,
        node: 'node-east-2',
        cluster: 'cluster-east',
        labels: { app: 'reviews' },
      },
      {
        name: 'legacy',
        namespace: 'payments',
        serviceAccount: 'legacy',
        ip: ip.legacy,
        node: 'node-east-2',
        cluster: 'cluster-east',
        protocol: 'TCP',
      },
      {
        name: 'checkout',
        namespace: 'payments',
        serviceAccount: 'checkout',
        ip: ip.checkout,
        node: 'node-west-3',
        cluster: 'cluster-west',
        locality: 'us-west-1/us-west-1b',
        labels: { app: 'checkout' },
      },
    ],
    services: [
      {
        name: 'inventory',
        namespace: 'payments',
        vip: ip.inventoryVip,
        ports: [{ port: 7070 }],
        endpoints: ['inventory'],
      },
      {
        name: 'checkout',
        namespace: 'payments',
        vip: ip.checkoutVip,
        ports: [{ port: 8080, targetPort: 8080 }],
        endpoints: ['checkout'],
      },
      {
        name: 'legacy',
        namespace: 'payments',
        vip: ip.legacyVip,
        ports: [{ port: 5432 }],
        endpoints: ['legacy'],
      },
      {
        name: 'reviews',
        namespace: 'payments',
        vip: ip.reviewsVip,
        ports: [{ port: 9080 }],
        endpoints: ['reviews'],
        waypoint: 'reviews-waypoint',
      },
      ...(o.services ?? []),
    ],
    gateways: [
      {
        name: 'eastwest-west',
        network: 'network-west',
        address: o.gatewayAddress?.address ?? ip.gateway,
        port: o.gatewayAddress?.port ?? 15008,
        identity: GATEWAY_ID,
        sni: o.gatewaySni ?? 'none',
      },
    ],
    waypoints: [
      { name: 'reviews-waypoint', network: 'network-east', address: ip.waypoint, identity: WAYPOINT_ID },
    ],
    policies: o.policies ?? [],
    peerAuthentication: { mode: o.peerAuthentication ?? 'STRICT' },
  };
}

export function seedMesh(base: string, o: MeshOverrides = {}): MeshConfig {
  return readMesh(seedMeshObject(base, o));
}

/** An app listening on a pod IP: echoes, and records what it saw. */
export interface EchoApp {
  readonly port: number;
  /** Remote addresses of the connections it accepted. */
  readonly peers: string[];
  /** Every byte it received, per connection, in order. */
  readonly received: Buffer[][];
  close(): Promise<void>;
}

export async function echoApp(host: string, port: number): Promise<EchoApp> {
  const peers: string[] = [];
  const received: Buffer[][] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    peers.push(`${s.remoteAddress}`);
    const mine: Buffer[] = [];
    received.push(mine);
    s.on('data', (c: Buffer) => mine.push(c));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r, j) => {
    server.once('error', j);
    server.listen(port, host, () => r());
  });
  let closing: Promise<void> | undefined;
  return {
    port,
    peers,
    received,
    close() {
      closing ??= new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

/** An HTTP app: answers `{method, path, from}` as JSON. */
export async function httpApp(
  host: string,
  port: number,
): Promise<{ close(): Promise<void>; requests: string[] }> {
  const requests: string[] = [];
  const server = http.createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const body = JSON.stringify({ method: req.method, path: req.url, from: req.socket.remoteAddress });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await new Promise<void>((r, j) => {
    server.once('error', j);
    server.listen(port, host, () => r());
  });
  let closing: Promise<void> | undefined;
  return {
    requests,
    close() {
      closing ??= new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** Reads a stream to its end. */
export function readAll(s: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.once('end', () => resolve(Buffer.concat(chunks)));
    s.once('error', reject);
  });
}

/** Writes `data`, half-closes, and reads the answer to its end. */
export async function roundTrip(s: NodeJS.ReadWriteStream, data: Buffer): Promise<Buffer> {
  const back = readAll(s);
  s.end(data);
  return back;
}

let casPromise: Promise<{ east: TestCa; west: TestCa }> | undefined;
/** One pair of CAs per test file (minting is fast; CA creation is shared). */
export function cas(): Promise<{ east: TestCa; west: TestCa }> {
  casPromise ??= Promise.all([TestCa.create(EAST_TD), TestCa.create(WEST_TD)]).then(([east, west]) => ({
    east,
    west,
  }));
  return casPromise;
}

export const bundleOf = (ca: TestCa): X509Bundle => X509Bundle.fromPem(ca.trustDomain, ca.bundlePem);

/** Collects closers; `close()` runs them all once, newest first, ignoring errors. */
export class Teardown {
  #fns: Array<() => unknown> = [];
  add<T extends { close(): Promise<void> | void }>(x: T): T {
    this.#fns.push(() => x.close());
    return x;
  }
  defer(fn: () => unknown): void {
    this.#fns.push(fn);
  }
  async close(): Promise<void> {
    const fns = this.#fns.reverse();
    this.#fns = [];
    for (const f of fns) {
      try {
        await f();
      } catch {
        // teardown goes on
      }
    }
  }
}

export interface SeedOptions extends MeshOverrides {
  /** East proxies' identities: default trust east's CA, federate west's bundle. */
  eastIdentities?: () => Promise<CaIdentities>;
  westIdentities?: () => Promise<CaIdentities>;
  gatewayIdentities?: () => Promise<CaIdentities>;
  gatewayAccept?: string[];
  sniRouting?: 'off' | 'require';
  /** Which components to start. Default all. */
  start?: Array<'east' | 'east2' | 'west' | 'gateway' | 'waypoint' | 'apps'>;
  handshakeMs?: number;
  connectMs?: number;
  westPeerAuthentication?: 'STRICT' | 'PERMISSIVE';
  captureBytes?: number;
}

export interface Seed {
  mesh: MeshConfig;
  ip: Addresses;
  east: NodeProxy;
  east2: NodeProxy;
  west: NodeProxy;
  gateway: EastWestGateway;
  waypoint: Waypoint;
  apps: {
    inventory: EchoApp;
    checkout: EchoApp;
    legacy: EchoApp;
    reviews: Awaited<ReturnType<typeof httpApp>>;
  };
}

/** Starts the seed topology (or part of it); everything is registered on `t` for teardown. */
export async function startSeed(base: string, t: Teardown, o: SeedOptions = {}): Promise<Seed> {
  const { east: eastCa, west: westCa } = await cas();
  const mesh = seedMesh(base, o);
  const ip = addresses(base);
  const want = new Set(o.start ?? ['east', 'east2', 'west', 'gateway', 'waypoint', 'apps']);
  const timeouts = { handshakeMs: o.handshakeMs ?? 5000, connectMs: o.connectMs ?? 5000 };
  const eastIds = o.eastIdentities ?? (async () => new CaIdentities([eastCa], [bundleOf(westCa)]));
  const westIds = o.westIdentities ?? (async () => new CaIdentities([westCa], [bundleOf(eastCa)]));
  const gwIds = o.gatewayIdentities ?? westIds;
  const seed: Partial<Seed> = { mesh, ip };
  const apps: Partial<Seed['apps']> = {};
  if (want.has('apps')) {
    apps.inventory = t.add(await echoApp(ip.inventory, 7070));
    apps.checkout = t.add(await echoApp(ip.checkout, 8080));
    apps.legacy = t.add(await echoApp(ip.legacy, 5432));
    apps.reviews = t.add(await httpApp(ip.reviews, 9080));
  }
  seed.apps = apps as Seed['apps'];
  if (want.has('east')) {
    seed.east = t.add(
      await NodeProxy.start({
        mesh,
        proxy: proxySection(mesh, {
          name: 'ztunnel-east',
          node: 'node-east-1',
          address: ip.ztunnelEast,
          cluster: 'cluster-east',
          timeouts,
        }),
        identities: await eastIds(),
      }),
    );
  }
  if (want.has('east2')) {
    seed.east2 = t.add(
      await NodeProxy.start({
        mesh,
        proxy: proxySection(mesh, {
          name: 'ztunnel-east-2',
          node: 'node-east-2',
          address: ip.ztunnelEast2,
          cluster: 'cluster-east',
          timeouts,
        }),
        identities: await eastIds(),
      }),
    );
  }
  if (want.has('west')) {
    seed.west = t.add(
      await NodeProxy.start({
        mesh,
        proxy: proxySection(mesh, {
          name: 'ztunnel-west',
          node: 'node-west-3',
          address: ip.ztunnelWest,
          cluster: 'cluster-west',
          timeouts,
          ...(o.westPeerAuthentication ? { peerAuthentication: o.westPeerAuthentication } : {}),
        }),
        identities: await westIds(),
      }),
    );
  }
  if (want.has('gateway')) {
    seed.gateway = t.add(
      await EastWestGateway.start({
        mesh,
        gateway: {
          name: 'eastwest-west',
          acceptTrustDomains: o.gatewayAccept ?? [EAST_TD, WEST_TD],
          sniRouting: o.sniRouting ?? 'off',
          adminPort: null,
          metricsPort: null,
          timeouts,
        },
        identities: await gwIds(),
        captureBytes: o.captureBytes ?? 0,
      }),
    );
  }
  if (want.has('waypoint')) {
    seed.waypoint = t.add(
      await Waypoint.start({
        mesh,
        waypoint: {
          name: 'reviews-waypoint',
          acceptTrustDomains: undefined,
          adminPort: null,
          metricsPort: null,
          timeouts,
        },
        identities: await eastIds(),
      }),
    );
  }
  return seed as Seed;
}

/** Polls `cond` every 10 ms until true (or fails after `ms`). */
export async function waitFor(cond: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
