/**
 * The five failure modes of the first seed ("What goes wrong"), each reproduced end to end on
 * 127.61.2.0/24, each surfacing an error that names the hop and the cause.
 */
import * as net from 'node:net';
import { createServer, H2_CODES, type HboneServer } from '@hbone/hbone';
import { createFaultProxy } from '@hbone/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { HopError, NoRouteError } from '../src/mesh/errors.js';
import { Socks5Error, socks5Connect } from '../src/mesh/socks5.js';
import { CaIdentities } from '../src/mesh/workload-identities.js';
import {
  addresses,
  bundleOf,
  CART_ID,
  CHECKOUT_ID,
  cas,
  payload,
  roundTrip,
  sha256,
  startSeed,
  Teardown,
  waitFor,
} from './mesh-fixture.js';

const BASE = '127.61.2';
const ip = addresses(BASE);
const t = new Teardown();
afterEach(() => t.close());

const CHECKOUT = `${ip.checkoutVip}:8080`;

async function failure(p: Promise<unknown>): Promise<HopError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HopError);
  return err as HopError;
}

describe("1. the gateway's 15008 is not reachable", () => {
  it('refused: the error names the hop to the gateway and "connection refused"', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'west', 'apps'] }); // no gateway listening
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('unreachable');
    expect(err.message).toBe(
      `ztunnel-east -> east-west gateway eastwest-west (network network-west) (${ip.gateway}:15008): unreachable: connection refused (ECONNREFUSED): is the port open and exposed?`,
    );
    expect(s.east.accessLog.entries.at(-1)?.error).toBe(err.message);
    expect(
      s.east.metrics.value('istio_tcp_connections_failed_total', {
        reporter: 'source',
        response_flags: 'CONNECT',
      }),
    ).toBe(1);
    expect(s.apps.checkout.peers).toEqual([]);
  });

  it('silently dropped: the handshake times out, and the error says so', async () => {
    const blackhole = t.add(
      await createFaultProxy({ target: { host: ip.gateway, port: 15008 }, mode: 'blackhole' }),
    );
    const s = await startSeed(BASE, t, {
      start: ['east', 'west', 'apps'],
      gatewayAddress: { address: blackhole.host, port: blackhole.port },
      handshakeMs: 300,
    });
    const started = Date.now();
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(err.hopCause).toBe('timeout');
    expect(err.message).toContain(`ztunnel-east -> east-west gateway eastwest-west`);
    expect(err.message).toContain('timed out after 300 ms waiting for the TLS handshake');
    expect(err.message).toContain('silently dropped');
    expect(blackhole.bytes.toTarget).toBe(0);
  });
});

describe('2. trust domain or root CA mismatch between clusters: an identity error, not "network"', () => {
  it('the gateway does not accept the source trust domain', async () => {
    const s = await startSeed(BASE, t, {
      start: ['east', 'west', 'gateway', 'apps'],
      gatewayAccept: ['west.local'],
    });
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('identity');
    expect(err.hop.to).toBe('east-west gateway eastwest-west (network network-west)');
    expect(err.message).toContain(
      'TLS/identity failure, not a network error (trust domain or root CA mismatch?)',
    );
    expect(err.responseFlag).toBe('TLS_FAILURE');
    await waitFor(() => s.gateway.refused.length === 1);
    expect(s.gateway.refused[0]).toMatch(/^TLS\/identity: client identity rejected/);
  });

  it("the source trusts a different root for the remote trust domain (the gateway's certificate fails)", async () => {
    const { east, west } = await cas();
    const impostor = await west.getImpostor();
    const s = await startSeed(BASE, t, {
      start: ['east', 'west', 'gateway', 'apps'],
      eastIdentities: async () => new CaIdentities([east], [bundleOf(impostor)]),
    });
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('identity');
    expect(err.hop.to).toContain('east-west gateway');
    expect(err.message).toMatch(/TLS handshake failed: .*certificate/);
  });

  it('the destination proxy does not trust the source trust domain (the inner handshake fails)', async () => {
    const { west } = await cas();
    const s = await startSeed(BASE, t, {
      start: ['east', 'west', 'gateway', 'apps'],
      westIdentities: async () => new CaIdentities([west]),
      gatewayIdentities: async () => new CaIdentities([west], [bundleOf((await cas()).east)]),
    });
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('identity');
    expect(err.hop.to).toBe(
      "checkout.payments.svc.cluster.local:8080's proxy through gateway eastwest-west (inner TLS)",
    );
    expect(err.message).toContain('not a network error');
    expect(err.message).toContain('it likely rejected our certificate or identity');
    expect(s.apps.checkout.peers).toEqual([]);
    await waitFor(() => s.west.accessLog.entries.length === 1);
    expect(String(s.west.accessLog.entries[0]?.error)).toMatch(/^TLS\/identity: /);
  });
});

describe('3. version skew: the peer rejects the CONNECT', () => {
  async function skewedWest(handler: Parameters<typeof createServer>[0]['handler']): Promise<HboneServer> {
    const { east, west } = await cas();
    const ids = new CaIdentities([west], [bundleOf(east)]);
    await ids.prepare([CHECKOUT_ID]);
    const srv = createServer({ ...ids.credentials(CHECKOUT_ID), authorizer: () => true, handler });
    await srv.listen(15008, ip.checkout);
    t.defer(() => srv.destroy());
    return srv;
  }

  it('421 from the destination proxy: the error says 421 and version skew', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'gateway', 'apps'] });
    await skewedWest((tun) => tun.reject(421));
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('version-skew');
    expect(err.status).toBe(421);
    expect(err.message).toBe(
      "ztunnel-east -> checkout.payments.svc.cluster.local:8080's proxy (inner CONNECT): rejected the CONNECT with 421 Misdirected Request: version skew between the proxies?",
    );
  });

  it('a reset from the destination proxy: the error names the reset code and version skew', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'gateway', 'apps'] });
    await skewedWest((tun) => tun.reset(H2_CODES.PROTOCOL_ERROR));
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('version-skew');
    expect(err.message).toContain('PROTOCOL_ERROR');
    expect(err.message).toContain('version skew');
  });
});

describe('4. an authorisation principal that does not match across clusters: 401, DENY', () => {
  it('denies with 401 and says which policy; fixing the principal lets it through', async () => {
    const wrongPrincipal = {
      name: 'checkout-from-cart',
      namespace: 'payments',
      selector: { matchLabels: { app: 'checkout' } },
      action: 'ALLOW',
      // Written as if cart lived in the destination's trust domain: it does not.
      rules: [{ from: [{ principals: ['cluster.local/ns/payments/sa/cart'] }] }],
    };
    const s = await startSeed(BASE, t, {
      start: ['east', 'west', 'gateway', 'apps'],
      policies: [wrongPrincipal],
    });
    const err = await failure(s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT }));
    expect(err.hopCause).toBe('denied');
    expect(err.status).toBe(401);
    expect(err.message).toContain('denied by authorisation policy (401, DENY)');
    await waitFor(() => s.west.accessLog.entries.length === 1);
    expect(s.west.accessLog.entries[0]).toMatchObject({
      'src.identity': CART_ID,
      error:
        'connection closed due to policy rejection: allow policies exist, but none allowed (payments/checkout-from-cart)',
    });
    expect(
      s.west.metrics.value('istio_tcp_connections_failed_total', {
        reporter: 'destination',
        response_flags: 'DENY',
      }),
    ).toBe(1);
    expect(s.apps.checkout.peers).toEqual([]);

    s.west.setPolicies([
      { ...s.mesh.policies[0]!, rules: [{ from: [{ principals: ['east.local/ns/payments/sa/cart'] }] }] },
    ]);
    const o = await s.east.connectOutbound({ src: s.ip.cart, dst: CHECKOUT });
    const data = payload(1000);
    expect(sha256(await roundTrip(o, data))).toBe(sha256(data));
  });
});

describe('5. stale configuration: "no route", never a plaintext dial', () => {
  it('an address the source proxy does not know: NoRouteError, and nothing is dialled', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'apps'] });
    // A service that exists "in reality" but has not reached ztunnel-east's configuration.
    let dialled = 0;
    const trap = net.createServer((c) => {
      dialled++;
      c.destroy();
    });
    await new Promise<void>((r) => trap.listen(8080, ip.spare(1), () => r()));
    t.defer(() => new Promise<void>((r) => trap.close(() => r())));
    const err = await s.east.connectOutbound({ src: s.ip.cart, dst: `${ip.spare(1)}:8080` }).catch((e) => e);
    expect(err).toBeInstanceOf(NoRouteError);
    expect((err as Error).message).toMatch(
      new RegExp(
        `^ztunnel-east: no route to ${ip.spare(1).replaceAll('.', '\\.')}:8080: unknown address.*not dialling it in plaintext\\)$`,
      ),
    );
    expect(s.east.accessLog.entries.at(-1)?.error).toBe((err as Error).message);
    // The same through SOCKS5, by hostname: the client gets "network unreachable".
    const socks = await socks5Connect({
      proxy: { host: ip.ztunnelEast, port: s.east.port('socks5')! },
      destination: { host: 'payments-v2.payments.svc.cluster.local', port: 8080 },
      localAddress: ip.cart,
    }).catch((e) => e);
    expect(socks).toBeInstanceOf(Socks5Error);
    expect((socks as Socks5Error).reply).toBe(3);
    expect(s.east.accessLog.entries.at(-1)?.error).toContain('unknown hostname');
    expect(dialled).toBe(0);
  });
});
