/**
 * Every route of the node proxy, end to end over real sockets on 127.61.1.0/24: same network
 * (HBONE straight to the destination's :15008), cross network (double HBONE through the
 * east-west gateway), TCP-only (plaintext), and a service with a waypoint. Bytes are checked by
 * SHA-256, identities at each hop, and the gateway is shown never to hold application bytes.
 */
import * as http from 'node:http';
import * as net from 'node:net';
import { HboneTunnel } from '@hbone/hbone';
import { afterEach, describe, expect, it } from 'vitest';
import { HopError } from '../src/mesh/errors.js';
import { formatProxyHeader } from '../src/mesh/proxy-protocol.js';
import { socks5Connect } from '../src/mesh/socks5.js';
import {
  CART_ID,
  CHECKOUT_ID,
  GATEWAY_ID,
  INVENTORY_ID,
  payload,
  REVIEWS_ID,
  roundTrip,
  sha256,
  startSeed,
  Teardown,
  WAYPOINT_ID,
  waitFor,
} from './mesh-fixture.js';

const BASE = '127.61.1';
const t = new Teardown();
afterEach(() => t.close());

const MARKER = Buffer.from('PLAINTEXT-APPLICATION-MARKER-7f3a9c');
const withMarkers = (n: number): Buffer => Buffer.concat([MARKER, payload(n), MARKER]);

describe('same network: HBONE straight to the destination :15008', () => {
  it('carries bytes intact and both proxies see the right identities', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'east2', 'apps'] });
    const data = payload(512 * 1024);
    const o = await s.east.openOutbound({ src: `${s.ip.cart}:40001`, dst: `${s.ip.inventoryVip}:7070` });
    expect(o.route.kind).toBe('hbone');
    expect(o.stream).toBeInstanceOf(HboneTunnel);
    const back = await roundTrip(o.stream, data);
    await o.done;
    expect(sha256(back)).toBe(sha256(data));
    expect(sha256(Buffer.concat(s.apps.inventory.received[0] ?? []))).toBe(sha256(data));
    await waitFor(() => s.east2.accessLog.entries.length === 1, 3000, 'the inbound log line');
    // The app sees the destination proxy's IP as its peer (the seed: "src = ztunnel-west's pod IP").
    expect(s.apps.inventory.peers).toEqual([s.ip.ztunnelEast2]);
    const out = s.east.accessLog.entries.at(-1)!;
    expect(out).toMatchObject({
      message: 'connection complete',
      direction: 'outbound',
      'src.addr': `${s.ip.cart}:40001`,
      'src.identity': CART_ID,
      'dst.addr': `${s.ip.inventory}:7070`,
      'dst.hbone_addr': `${s.ip.inventory}:15008`,
      'dst.service': 'inventory.payments.svc.cluster.local',
      'dst.identity': INVENTORY_ID,
      bytes_sent: data.length,
      bytes_recv: data.length,
    });
    const inbound = s.east2.accessLog.entries.at(-1)!;
    expect(inbound).toMatchObject({
      direction: 'inbound',
      'src.addr': `${s.ip.cart}:40001`,
      'src.identity': CART_ID,
      'src.workload': 'cart',
      'dst.identity': INVENTORY_ID,
      bytes_sent: data.length,
      bytes_recv: data.length,
    });
    expect(String(inbound.duration)).toMatch(/^\d+ms$/);
    const seen = s.east2.observations.items.at(-1)!;
    expect(seen.peerIdentity).toBe(CART_ID);
    expect(seen.alpn).toBe('h2');
    expect(seen.baggage).toContain('k8s.namespace.name=payments');
    expect(seen.baggage).toContain('k8s.deployment.name=cart');
  });

  it('captures through SOCKS5 (IP or hostname) and through :15001 with a PROXY header', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'east2', 'apps'] });
    const socksPort = s.east.port('socks5')!;
    for (const destination of [
      { host: s.ip.inventoryVip, port: 7070 },
      { host: 'inventory.payments.svc.cluster.local', port: 7070 },
    ]) {
      const sock = await socks5Connect({
        proxy: { host: s.ip.ztunnelEast, port: socksPort },
        destination,
        localAddress: s.ip.cart,
      });
      t.defer(() => sock.destroy());
      const data = payload(64 * 1024);
      expect(sha256(await roundTrip(sock, data))).toBe(sha256(data));
    }
    const capture = net.connect({
      host: s.ip.ztunnelEast,
      port: s.east.port('outbound')!,
      localAddress: s.ip.cart,
    });
    t.defer(() => capture.destroy());
    await new Promise<void>((r) => capture.once('connect', () => r()));
    capture.write(
      formatProxyHeader({
        src: { host: s.ip.cart, port: capture.localPort! },
        dst: { host: s.ip.inventoryVip, port: 7070 },
      }),
    );
    const data = payload(32 * 1024);
    expect(sha256(await roundTrip(capture, data))).toBe(sha256(data));
    expect(s.east.observations.items.map((o) => o.protocolIn)).toEqual([
      'TCP (SOCKS5)',
      'TCP (SOCKS5)',
      'TCP (PROXY v1)',
    ]);
  });
});

describe('cross network: double HBONE through the east-west gateway', () => {
  it('reaches checkout in cluster-west; the gateway verifies cart, never holds plaintext', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'west', 'gateway', 'apps'], captureBytes: 4 << 20 });
    const data = withMarkers(256 * 1024);
    const o = await s.east.openOutbound({ src: `${s.ip.cart}:40002`, dst: `${s.ip.checkoutVip}:8080` });
    expect(o.route.kind).toBe('double-hbone');
    const back = await roundTrip(o.stream, data);
    await o.done;
    expect(sha256(back)).toBe(sha256(data));
    expect(sha256(Buffer.concat(s.apps.checkout.received[0] ?? []))).toBe(sha256(data));
    await waitFor(() => s.gateway.observations.items.length === 1 && s.west.observations.items.length === 1);

    // Hop 1, ztunnel-east: verified the destination workload through the gateway.
    const out = s.east.observations.items.at(-1)!;
    expect(out.peerIdentity).toBe(CHECKOUT_ID);
    expect(out.authority).toBe('checkout.payments.svc.cluster.local:8080');
    expect(out.forwardedNetwork).toBe('network-east');
    // Hop 3, the gateway: verified cart on the outer TLS, routed the hostname.
    const gw = s.gateway.observations.items.at(-1)!;
    expect(gw.peerIdentity).toBe(CART_ID);
    expect(gw.authority).toBe('checkout.payments.svc.cluster.local:8080');
    expect(gw.protocolOut).toContain(`${s.ip.checkout}:15008`);
    expect(gw.bytesToDst).toBeGreaterThan(data.length);
    // Hop 4, ztunnel-west: verified cart on the inner TLS, saw the forwarded network.
    const inb = s.west.observations.items.at(-1)!;
    expect(inb.peerIdentity).toBe(CART_ID);
    expect(inb.forwardedNetwork).toBe('network-east');
    expect(inb.bytesToDst).toBe(data.length);
    const inLog = s.west.accessLog.entries.at(-1)!;
    expect(inLog['src.addr']).toBe(`${s.ip.cart}:40002`);
    expect(inLog['dst.service']).toBe('checkout.payments.svc.cluster.local');
    // The gateway forwarded every byte of the inner TLS, and never the application's.
    const forwarded = s.gateway.captured();
    expect(forwarded.length).toBeGreaterThan(2 * data.length);
    expect(forwarded.includes(MARKER)).toBe(false);
    expect(s.gateway.accessLog.entries.at(-1)).toMatchObject({
      'src.identity': CART_ID,
      'dst.identity': GATEWAY_ID,
      'dst.hbone_addr': `${s.ip.checkout}:15008`,
    });
  });

  it('routes on the SNI when the gateway requires it, and refuses a foreign trust domain in it', async () => {
    const s = await startSeed(BASE, t, {
      start: ['east', 'west', 'gateway', 'apps'],
      gatewaySni: 'source-identity',
      sniRouting: 'require',
    });
    const data = payload(16 * 1024);
    const o = await s.east.openOutbound({ src: s.ip.cart, dst: `${s.ip.checkoutVip}:8080` });
    expect(sha256(await roundTrip(o.stream, data))).toBe(sha256(data));
    await waitFor(() => s.gateway.observations.items.length === 1, 3000, 'the gateway observation');
    expect(s.gateway.observations.items[0]?.sni).toBe(CART_ID);
    expect(s.east.observations.items.at(-1)?.sni).toBe(CART_ID);
  });

  it('with SNI routing required, refuses a client that sends no SNI before TLS', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'west', 'gateway', 'apps'], sniRouting: 'require' });
    const err = await s.east
      .connectOutbound({ src: s.ip.cart, dst: `${s.ip.checkoutVip}:8080` })
      .catch((e) => e);
    expect(err).toBeInstanceOf(HopError);
    expect((err as HopError).hop.to).toContain('east-west gateway eastwest-west');
    expect(s.gateway.refused).toEqual(['SNI routing: the ClientHello carries no SNI']);
    expect(s.apps.checkout.peers).toEqual([]);
  });
});

describe('TCP-only destination: plaintext', () => {
  it('dials the workload directly from the source pod IP, and logs no HBONE address', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'apps'] });
    const data = payload(100_000);
    const o = await s.east.openOutbound({ src: s.ip.cart, dst: `${s.ip.legacyVip}:5432` });
    expect(o.route.kind).toBe('plaintext');
    expect(sha256(await roundTrip(o.stream, data))).toBe(sha256(data));
    await o.done;
    expect(s.apps.legacy.peers).toEqual([s.ip.cart]);
    const line = s.east.accessLog.entries.at(-1)!;
    expect(line['dst.addr']).toBe(`${s.ip.legacy}:5432`);
    expect(line['dst.hbone_addr']).toBeUndefined();
    expect(line['dst.identity']).toBeUndefined();
    expect(
      s.east.metrics.value('istio_tcp_connections_opened_total', { connection_security_policy: 'none' }),
    ).toBe(1);
  });
});

describe('a service with a waypoint', () => {
  function get(
    stream: NodeJS.ReadWriteStream,
    path: string,
    method = 'GET',
  ): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          method,
          path,
          host: 'reviews.payments.svc.cluster.local',
          createConnection: () => stream as net.Socket,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }),
          );
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  it('goes through the waypoint, which applies the L7 rule by principal and sends on as itself', async () => {
    const s = await startSeed(BASE, t, {
      start: ['east', 'east2', 'waypoint', 'apps'],
      policies: [
        {
          name: 'reviews-read-only',
          namespace: 'payments',
          targetRef: { kind: 'Service', name: 'reviews' },
          action: 'ALLOW',
          rules: [{ from: [{ principals: [CART_ID] }], to: [{ methods: ['GET'], paths: ['/reviews/*'] }] }],
        },
      ],
    });
    const ok = await s.east.openOutbound({ src: s.ip.cart, dst: `${s.ip.reviewsVip}:9080` });
    expect(ok.route.kind).toBe('waypoint');
    const r1 = await get(ok.stream, '/reviews/42');
    expect(r1.status).toBe(200);
    expect(JSON.parse(r1.body)).toMatchObject({
      method: 'GET',
      path: '/reviews/42',
      from: s.ip.ztunnelEast2,
    });
    const denied = await s.east.openOutbound({ src: s.ip.cart, dst: `${s.ip.reviewsVip}:9080` });
    const r2 = await get(denied.stream, '/reviews/42', 'DELETE');
    expect(r2).toEqual({ status: 403, body: 'RBAC: access denied' });
    expect(s.apps.reviews.requests).toEqual(['GET /reviews/42']);
    expect(s.waypoint.decisions.map((d) => [d.principal, d.method, d.status])).toEqual([
      [CART_ID, 'GET', 200],
      [CART_ID, 'DELETE', 403],
    ]);
    // ztunnel-east verified the waypoint; the reviews proxy saw the waypoint's identity.
    expect(s.east.observations.items[0]?.peerIdentity).toBe(WAYPOINT_ID);
    await waitFor(() => s.east2.accessLog.entries.some((e) => e['dst.identity'] === REVIEWS_ID));
    const atReviews = s.east2.accessLog.entries.find((e) => e['dst.identity'] === REVIEWS_ID);
    expect(atReviews?.['src.identity']).toBe(WAYPOINT_ID);
  });
});

describe('observability endpoints', () => {
  it('serves metrics on :15020, readiness on :15021 and a config dump on :15000', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'east2', 'apps'] });
    const o = await s.east.openOutbound({ src: s.ip.cart, dst: `${s.ip.inventoryVip}:7070` });
    await roundTrip(o.stream, Buffer.from('hello'));
    await o.done;
    const fetchText = async (port: number, path: string) => {
      const res = await fetch(`http://${s.ip.ztunnelEast}:${port}${path}`);
      return { status: res.status, text: await res.text() };
    };
    const metrics = await fetchText(s.east.port('metrics')!, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('# TYPE istio_tcp_connections_opened_total counter');
    expect(metrics.text).toMatch(
      /istio_tcp_connections_closed_total\{reporter="source",source_workload="cart".*destination_principal="spiffe:\/\/east.local\/ns\/payments\/sa\/inventory".*response_flags="-"\} 1/,
    );
    expect(metrics.text).toMatch(/istio_tcp_received_bytes_total\{reporter="source".*\} 5/);
    expect(metrics.text).toContain('hbone_pool_connections{proxy="ztunnel-east"} 1');
    expect(await fetchText(s.east.port('readiness')!, '/healthz/ready')).toEqual({
      status: 200,
      text: 'ready\n',
    });
    const dump = JSON.parse((await fetchText(s.east.port('admin')!, '/config_dump')).text) as {
      workloads: Array<{ name: string }>;
      certificates: Array<{ identity: string }>;
    };
    expect(dump.workloads.map((w) => w.name)).toEqual(['cart']);
    expect(dump.certificates.map((c) => c.identity)).toEqual([CART_ID]);
  });
});
