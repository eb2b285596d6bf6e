/**
 * Library behaviour the mesh once had to work around, now fixed in `@hbone/hbone` and pinned
 * here on 127.61.9.0/24 so it stays fixed.
 */
import { connect, connectOver, createServer, gatewayHandler, TlsHandshakeError } from '@hbone/hbone';
import { StaticSource, X509Bundle, X509Svid } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';
import { afterEach, expect, it } from 'vitest';
import { Teardown } from './mesh-fixture.js';

const HOST = '127.61.9.1';
const t = new Teardown();
afterEach(() => t.close());

async function sources(ca: TestCa, id: string, trusted: TestCa[]) {
  const m = await ca.mint(id);
  const s = new StaticSource({
    svid: X509Svid.parse(m.certChainPem, m.keyPem),
    bundles: trusted.map((c) => X509Bundle.fromPem(c.trustDomain, c.bundlePem)),
  });
  return { svidSource: s, bundleSource: s };
}

it('connectOver() fails fast with a TLS error when the outer tunnel ends during the inner start-up', async () => {
  const a = await TestCa.create('a.local');
  const b = await TestCa.create('b.local');
  // The destination trusts only b.local: it rejects the a.local client on the inner TLS.
  const dest = createServer({
    ...(await sources(b, 'spiffe://b.local/ns/x/sa/dest', [b])),
    authorizer: () => true,
    handler: (tun) => tun.reject(503),
  });
  const { port: destPort } = await dest.listen(0, HOST);
  t.defer(() => dest.destroy());
  const gw = createServer({
    ...(await sources(b, 'spiffe://b.local/ns/x/sa/gw', [a, b])),
    authorizer: () => true,
    handler: gatewayHandler({ route: () => ({ host: HOST, port: destPort }) }),
  });
  const { port: gwPort } = await gw.listen(0, HOST);
  t.defer(() => gw.destroy());
  const client = await sources(a, 'spiffe://a.local/ns/x/sa/client', [a, b]);
  const session = await connect(
    { host: HOST, port: gwPort },
    { ...client, expectedIdentities: ['spiffe://b.local/ns/x/sa/gw'] },
  );
  t.defer(() => session.destroy());
  const outer = await session.open({ authority: 'dest.x.svc.cluster.local:80' });
  const started = Date.now();
  const err = await connectOver(outer, {
    ...client,
    expectedIdentities: ['spiffe://b.local/ns/x/sa/dest'],
    handshakeTimeoutMs: 3000,
  }).catch((e: unknown) => e);
  // Today: HboneTimeoutError "waiting for the peer HTTP/2 SETTINGS" after the full 3 s, though
  // the outer tunnel had ended within milliseconds: an identity failure that looks like a network one.
  expect(err).toBeInstanceOf(TlsHandshakeError);
  expect(Date.now() - started).toBeLessThan(1000);
});
