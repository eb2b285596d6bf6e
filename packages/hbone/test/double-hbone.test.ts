import { createFaultProxy } from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  createServer,
  forwardHandler,
  gatewayHandler,
  IdentityMismatchError,
  openDoubleHbone,
} from '../src/index.js';
import { echoServer, identity, payload, readAll, sha256 } from './fixtures.js';
import { CLIENT_ID, useHarness } from './harness.js';

const h = useHarness();

const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-eastwest/sa/eastwest';
const DEST_ID = 'spiffe://cluster.local/ns/payments/sa/checkout';

/** client -> gateway (outer HBONE) -> [proxy recording] -> destination proxy (inner HBONE) -> echo */
async function topology() {
  const echo = await echoServer();
  h.defer(() => echo.close());
  const dest = await identity(DEST_ID);
  const seenAtDest: Array<{ peer: string; network: string | undefined; authority: string }> = [];
  const destServer = createServer({
    ...dest.sources,
    handler: (t) => {
      seenAtDest.push({
        peer: String(t.peerIdentity),
        network: t.forwardedNetwork(),
        authority: t.authorityString,
      });
      return forwardHandler({ resolve: () => ({ host: '127.0.0.1', port: echo.port }) })(t);
    },
  });
  const { port: destPort } = await destServer.listen(0);
  h.defer(() => destServer.destroy());
  // A tap between gateway and destination: shows what the gateway forwards.
  const tap = await createFaultProxy({ target: { host: '127.0.0.1', port: destPort }, record: true });
  h.defer(() => tap.close());
  const gw = await identity(GATEWAY_ID);
  const gateway = createServer({
    ...gw.sources,
    handler: gatewayHandler({
      route: (t) => (t.authority.kind === 'hostname' ? { host: '127.0.0.1', port: tap.port } : undefined),
    }),
  });
  const { port: gwPort } = await gateway.listen(0);
  h.defer(() => gateway.destroy());
  return { gwPort, seenAtDest, tap };
}

describe('double HBONE through an east-west gateway', () => {
  it('carries bytes end to end, verifies both identities, and the gateway never sees plaintext', async () => {
    const { gwPort, seenAtDest, tap } = await topology();
    const outer = await h.connect(gwPort, { expectedIdentities: [GATEWAY_ID] });
    const { tunnel, inner } = await openDoubleHbone(
      outer,
      { authority: 'checkout.payments.svc.cluster.local:8080', forwardedNetwork: 'network-west' },
      { ...h.client.sources, expectedIdentities: [DEST_ID] },
    );
    expect(outer.peerIdentity.toString()).toBe(GATEWAY_ID);
    expect(inner.peerIdentity.toString()).toBe(DEST_ID);
    const marker = Buffer.from('PLAINTEXT-MARKER-0123456789');
    const data = Buffer.concat([marker, payload(256 * 1024), marker]);
    const back = readAll(tunnel);
    tunnel.end(data);
    expect(sha256(await back)).toBe(sha256(data));
    expect(seenAtDest).toEqual([
      { peer: CLIENT_ID, network: 'network-west', authority: 'checkout.payments.svc.cluster.local:8080' },
    ]);
    const forwarded = Buffer.concat(tap.recorded);
    expect(forwarded.length).toBeGreaterThan(data.length);
    expect(forwarded.includes(marker)).toBe(false);
  });

  it('rejects a destination whose identity is not the expected one', async () => {
    const { gwPort } = await topology();
    const outer = await h.connect(gwPort, { expectedIdentities: [GATEWAY_ID] });
    await expect(
      openDoubleHbone(
        outer,
        { authority: 'checkout.payments.svc.cluster.local:8080', forwardedNetwork: 'network-west' },
        { ...h.client.sources, expectedIdentities: ['spiffe://cluster.local/ns/payments/sa/not-checkout'] },
      ),
    ).rejects.toBeInstanceOf(IdentityMismatchError);
  });
});
