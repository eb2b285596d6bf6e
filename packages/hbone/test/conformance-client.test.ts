/**
 * Client-side conformance (docs/spec/hbone.md Appendix B): what our client puts on the wire in
 * double HBONE ([DBL-2], [DBL-4], [DBL-5]) and what it refuses in the TLS handshake ([TLS-1],
 * [TLS-5]). Real sockets on 127.0.0.1 only: the gateway and the destination are our own server,
 * recording each CONNECT's headers as received; the non-conforming TLS servers are plain
 * `node:tls` servers with a certificate from the testkit CA.
 */
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { peerCredentials } from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  createServer,
  gatewayHandler,
  H2HandshakeError,
  type HboneClientSession,
  type HboneTunnel,
  openDoubleHbone,
  TlsHandshakeError,
  type TunnelHandler,
} from '../src/index.js';
import { identity, readAll } from './fixtures.js';
import { echo, useHarness } from './harness.js';

const h = useHarness();

const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-eastwest/sa/eastwest';
const DEST_ID = 'spiffe://cluster.local/ns/payments/sa/checkout';
const SERVICE = 'checkout.payments.svc.cluster.local:8080';

/** One CONNECT as a server received it. */
interface Seen {
  headers: Record<string, unknown>;
  /** `[name, value]` in wire order. */
  raw: Array<[string, string]>;
}

function record(into: Seen[], handler: TunnelHandler): TunnelHandler {
  return (t) => {
    const raw: Array<[string, string]> = [];
    for (let i = 0; i + 1 < t.rawHeaders.length; i += 2) raw.push([t.rawHeaders[i]!, t.rawHeaders[i + 1]!]);
    into.push({ headers: { ...t.headers }, raw });
    return handler(t);
  };
}

/** Every value of header `name` (case-insensitive) in wire order. */
const rawValues = (s: Seen, name: string): string[] =>
  s.raw.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v);

/**
 * client -> gateway (our server, outer HBONE; records the outer CONNECT, then forwards the
 * bytes as gatewayHandler does) -> destination (our server, inner HBONE; records the inner
 * CONNECT and the inner connections it accepts, then echoes).
 */
async function doubleHboneTopology() {
  const dest = await identity(DEST_ID);
  const atDest: Seen[] = [];
  const destConnections: string[] = [];
  const destServer = createServer({ ...dest.sources, handler: record(atDest, echo) });
  destServer.on('connection', (c: { peerIdentity: unknown }) => destConnections.push(String(c.peerIdentity)));
  const { port: destPort } = await destServer.listen(0, '127.0.0.1');
  h.defer(() => destServer.destroy());

  const gw = await identity(GATEWAY_ID);
  const atGateway: Seen[] = [];
  const gatewayConnections: string[] = [];
  const gateway = createServer({
    ...gw.sources,
    handler: record(
      atGateway,
      gatewayHandler({
        route: (t) => (t.authority.kind === 'hostname' ? { host: '127.0.0.1', port: destPort } : undefined),
      }),
    ),
  });
  gateway.on('connection', (c: { peerIdentity: unknown }) => gatewayConnections.push(String(c.peerIdentity)));
  const { port: gwPort } = await gateway.listen(0, '127.0.0.1');
  h.defer(() => gateway.destroy());

  const outer = await h.connect(gwPort, { expectedIdentities: [GATEWAY_ID] });
  const innerOptions = { ...h.client.sources, expectedIdentities: [DEST_ID] };
  return { outer, innerOptions, atGateway, atDest, destServer, destConnections, gatewayConnections };
}

/** Sends `text` through a double-HBONE tunnel and expects it back (the path really works). */
async function roundTrip(tunnel: HboneTunnel, text: string): Promise<void> {
  const back = readAll(tunnel);
  tunnel.end(text);
  expect((await back).toString()).toBe(text);
}

async function waitUntil(what: string, cond: () => boolean, ms = 5_000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('double HBONE: the outer and the inner CONNECT', () => {
  it('the outer CONNECT carries no x-forwarded-network; the inner one carries the sender network [DBL-2]', async () => {
    const { outer, innerOptions, atGateway, atDest } = await doubleHboneTopology();
    const { tunnel } = await openDoubleHbone(
      outer,
      { authority: SERVICE, forwardedNetwork: 'network-west' },
      innerOptions,
    );
    await roundTrip(tunnel, 'dbl-2');

    expect(atGateway).toHaveLength(1);
    const outerSeen = atGateway[0]!;
    expect(outerSeen.headers[':authority']).toBe(SERVICE);
    expect(outerSeen.headers['x-forwarded-network']).toBeUndefined();
    expect(outerSeen.raw.map(([n]) => n.toLowerCase())).not.toContain('x-forwarded-network');

    expect(atDest).toHaveLength(1);
    const innerSeen = atDest[0]!;
    expect(innerSeen.headers[':authority']).toBe(SERVICE);
    expect(rawValues(innerSeen, 'x-forwarded-network')).toEqual(['network-west']);
  });

  it('the inner CONNECT repeats the generated outer traceparent, the baggage and the forwarded values [DBL-5]', async () => {
    const { outer, innerOptions, atGateway, atDest } = await doubleHboneTopology();
    const { tunnel } = await openDoubleHbone(
      outer,
      {
        authority: SERVICE,
        forwardedNetwork: 'network-west',
        baggage: { clusterName: 'west', namespace: 'shop', workloadName: 'cart', serviceName: 'cart' },
        forwarded: { for: '10.1.2.3:40000', host: 'checkout.payments.svc.cluster.local' },
        // no traceparent: openDoubleHbone makes one for both CONNECTs
      },
      innerOptions,
    );
    await roundTrip(tunnel, 'dbl-5');

    const [o] = atGateway;
    const [i] = atDest;
    expect(o && i).toBeTruthy();
    for (const name of [':authority', 'baggage', 'forwarded', 'traceparent']) {
      const outerValue = rawValues(o!, name);
      expect(outerValue, `outer ${name}`).toHaveLength(1);
      expect(outerValue[0], `outer ${name}`).not.toBe('');
      expect(rawValues(i!, name), `inner ${name}`).toEqual(outerValue);
    }
    expect(rawValues(o!, 'traceparent')[0]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$/);
    expect(rawValues(o!, 'baggage')[0]).toContain('k8s.namespace.name=shop');
    expect(rawValues(o!, 'forwarded')[0]).toContain('10.1.2.3:40000');
  });

  it('the inner CONNECT repeats a traceparent given by the caller, and both omit it when asked [DBL-5]', async () => {
    const { outer, innerOptions, atGateway, atDest } = await doubleHboneTopology();
    const given = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const a = await openDoubleHbone(
      outer,
      { authority: SERVICE, forwardedNetwork: 'network-west', traceparent: given },
      innerOptions,
    );
    await roundTrip(a.tunnel, 'given');
    const b = await openDoubleHbone(
      outer,
      { authority: SERVICE, forwardedNetwork: 'network-west', traceparent: false },
      innerOptions,
    );
    await roundTrip(b.tunnel, 'none');

    expect(atGateway.map((s) => rawValues(s, 'traceparent'))).toEqual([[given], []]);
    expect(atDest.map((s) => rawValues(s, 'traceparent'))).toEqual([[given], []]);
  });

  it('two opens to the same destination through the same gateway make two inner TLS connections, one tunnel each [DBL-4]', async () => {
    const { outer, innerOptions, atGateway, atDest, destServer, destConnections, gatewayConnections } =
      await doubleHboneTopology();
    const request = { authority: SERVICE, forwardedNetwork: 'network-west' };
    // Both open at once, and both stay open while the other is used: a shared inner session
    // would be the obvious candidate here.
    const [a, b] = await Promise.all([
      openDoubleHbone(outer, request, innerOptions),
      openDoubleHbone(outer, request, innerOptions),
    ]);
    expect(a.inner).not.toBe(b.inner);
    expect(destConnections).toHaveLength(2);
    expect(destServer.connections).toBe(2);
    // A third, after the first two: still a fresh inner connection.
    const c = await openDoubleHbone(outer, request, innerOptions);
    expect(destConnections).toHaveLength(3);
    await Promise.all([roundTrip(a.tunnel, 'a'), roundTrip(b.tunnel, 'b'), roundTrip(c.tunnel, 'c')]);

    for (const d of [a, b, c]) expect(d.inner.totalStreams).toBe(1);
    expect(atDest).toHaveLength(3);
    // The outer connection to the gateway is the pooled one: one, carrying three outer tunnels.
    expect(gatewayConnections).toHaveLength(1);
    expect(atGateway).toHaveLength(3);
    expect(outer.totalStreams).toBe(3);
    // When the inner tunnel ends, the inner connection goes away (it never returns to a pool).
    await waitUntil('the inner sessions to close', () => [a, b, c].every((d) => d.inner.state === 'closed'));
    await waitUntil('the destination to drop the inner connections', () => destServer.connections === 0);
  });
});

/** A plain node:tls server with our server's SVID; counts what reached it. */
async function plainTlsServer(opts: tls.TlsOptions) {
  /** TCP connections (accepted, closed), TLS sessions, TLS failures, bytes read over TLS. */
  const seen = { tcp: 0, tcpClosed: 0, secure: 0, clientErrors: [] as Error[], bytesAfterHandshake: 0 };
  const sockets = new Set<tls.TLSSocket>();
  const server = tls.createServer(
    {
      ...peerCredentials(h.server.minted, h.ca),
      requestCert: true,
      rejectUnauthorized: false,
      ...opts,
    },
    (socket) => {
      seen.secure++;
      sockets.add(socket);
      socket.on('data', (d: Buffer) => {
        seen.bytesAfterHandshake += d.length;
      });
      socket.on('error', () => {});
      socket.on('close', () => sockets.delete(socket));
    },
  );
  server.on('connection', (tcp) => {
    seen.tcp++;
    tcp.once('close', () => seen.tcpClosed++);
  });
  server.on('tlsClientError', (err) => seen.clientErrors.push(err));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  h.defer(
    () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as AddressInfo).port, seen };
}

/** Connects with a deadline; returns the error and how long it took to come. */
async function failedConnect(
  port: number,
  handshakeTimeoutMs: number,
): Promise<{ err: unknown; ms: number }> {
  const started = Date.now();
  let session: HboneClientSession | undefined;
  try {
    session = await h.connect(port, { handshakeTimeoutMs });
  } catch (err) {
    return { err, ms: Date.now() - started };
  }
  session.destroy();
  throw new Error(
    `connected to a non-conforming server (ALPN ${String(session.tls.alpn)}, ${session.tls.protocol})`,
  );
}

describe('the client refuses a server that is not TLS 1.3 with ALPN h2', () => {
  const DEADLINE_MS = 3_000;

  it('a TLS 1.2-only server: TlsHandshakeError well within the deadline, no TLS session [TLS-1]', async () => {
    const { port, seen } = await plainTlsServer({
      minVersion: 'TLSv1.2',
      maxVersion: 'TLSv1.2',
      ALPNProtocols: ['h2'],
    });
    const { err, ms } = await failedConnect(port, DEADLINE_MS);
    expect(err).toBeInstanceOf(TlsHandshakeError);
    expect((err as Error).message).not.toMatch(/timeout|timed out/i);
    expect(ms).toBeLessThan(DEADLINE_MS);
    expect(seen.secure).toBe(0);
    // The server saw a ClientHello it could not answer: TLS 1.3 only, nothing older offered.
    await waitUntil('the server to report the refused ClientHello', () => seen.clientErrors.length === 1);
    expect(String(seen.clientErrors[0])).toMatch(/unsupported protocol|version/i);
  });

  it('a TLS 1.3 server that selects no ALPN: H2HandshakeError, and not one byte of HTTP/2 is sent [TLS-5]', async () => {
    const { port, seen } = await plainTlsServer({ minVersion: 'TLSv1.3' });
    const { err, ms } = await failedConnect(port, DEADLINE_MS);
    expect(err).toBeInstanceOf(H2HandshakeError);
    expect((err as Error).message).toMatch(/ALPN/);
    expect(ms).toBeLessThan(DEADLINE_MS);
    // The client closed the connection right after the TLS handshake, without a preface or
    // SETTINGS (had it sent them, the server would have read them: see the control below).
    await waitUntil('the connection to close', () => seen.tcp === 1 && seen.tcpClosed === 1);
    expect(seen.bytesAfterHandshake).toBe(0);
  });

  it('a TLS 1.3 server that speaks only http/1.1: the handshake fails, and no HTTP/2 is sent [TLS-5]', async () => {
    const { port, seen } = await plainTlsServer({ minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] });
    const { err, ms } = await failedConnect(port, DEADLINE_MS);
    // node's server answers an offer with no common protocol with alert no_application_protocol.
    expect(err).toBeInstanceOf(TlsHandshakeError);
    expect((err as Error).message).toMatch(/no.application.protocol/i);
    expect(ms).toBeLessThan(DEADLINE_MS);
    await waitUntil('the connection to close', () => seen.tcp === 1 && seen.tcpClosed === 1);
    expect(seen.secure).toBe(0);
    expect(seen.bytesAfterHandshake).toBe(0);
  });

  it('a control: the same plain server with TLS 1.3 and ALPN h2 gets the HTTP/2 preface', async () => {
    // Shows the two servers above would have seen HTTP/2 bytes, had the client started it.
    const { port, seen } = await plainTlsServer({ minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] });
    const { err } = await failedConnect(port, 500);
    expect(String(err)).toMatch(/SETTINGS/); // the plain server never answers the preface
    expect(seen.secure).toBe(1);
    expect(seen.bytesAfterHandshake).toBeGreaterThanOrEqual(24);
  });
});
