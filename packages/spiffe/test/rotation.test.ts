/**
 * Rotation: after a source changes, new TLS handshakes use the new SVID / bundles, and open
 * connections keep working. Also the authoriser on both sides of a real handshake.
 */
import { once } from 'node:events';
import * as tls from 'node:tls';
import { TestCa } from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeAny,
  authorizeId,
  enforceServerPeers,
  keepServerCredentialsFresh,
  MemorySource,
  peerIdentity,
  type SpiffeError,
  tlsClientOptions,
  tlsServerOptions,
  X509Bundle,
  X509Svid,
} from '../src/index.js';
import { exchange, listen, Tracker, until } from './tls-harness.js';

const TD = 'example.org';
const SERVER = `spiffe://${TD}/ns/default/sa/server`;
const CLIENT = `spiffe://${TD}/ns/default/sa/client`;
let ca: TestCa;
let other: TestCa;
let bundle: X509Bundle;
const tracker = new Tracker();
const stops: (() => void)[] = [];

beforeAll(async () => {
  [ca, other] = await Promise.all([TestCa.create(TD), TestCa.create(TD)]);
  bundle = X509Bundle.fromPem(TD, ca.bundlePem);
});
afterEach(async () => {
  for (const s of stops.splice(0)) s();
  await tracker.closeAll();
});

async function svid(caToUse: TestCa, id: string): Promise<X509Svid> {
  const m = await caToUse.mint(id);
  return X509Svid.parse(m.certChainPem, m.keyPem);
}

/** An echo server on our options, kept fresh from `source`. */
async function echoServer(source: MemorySource, authorizer = authorizeAny()) {
  const server = tracker.server(
    tls.createServer(tlsServerOptions({ svidSource: source, bundleSource: source })),
  );
  stops.push(enforceServerPeers(server, { bundleSource: source, authorizer }));
  stops.push(keepServerCredentialsFresh(server, { svidSource: source, bundleSource: source }));
  const peers: string[] = [];
  const rejected: SpiffeError[] = [];
  server.on('peerRejected', (e: SpiffeError) => rejected.push(e));
  server.on('secureConnection', (s: tls.TLSSocket) => {
    peers.push(`${peerIdentity(s)} ${s.getPeerCertificate().serialNumber}`);
    s.on('data', (d) => s.write(d));
  });
  return { server, port: await listen(server), peers, rejected };
}

async function connect(
  source: MemorySource,
  port: number,
  authorizer = authorizeAny(),
): Promise<tls.TLSSocket> {
  const opts = tlsClientOptions({ svidSource: source, bundleSource: source, authorizer });
  const socket = tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port }));
  await once(socket, 'secureConnect');
  return socket;
}

async function echo(socket: tls.TLSSocket, text: string): Promise<string> {
  socket.write(text);
  const [d] = await once(socket, 'data');
  return String(d);
}

const serial = (s: X509Svid) => s.leaf.serialNumber.toUpperCase();

describe('rotation', () => {
  it('a server SVID swap: new handshakes present the new SVID, the open connection keeps working', async () => {
    const [s1, s2, c1] = await Promise.all([svid(ca, SERVER), svid(ca, SERVER), svid(ca, CLIENT)]);
    const serverSource = new MemorySource({ svid: s1, bundles: bundle });
    const clientSource = new MemorySource({ svid: c1, bundles: bundle });
    const { port } = await echoServer(serverSource);

    const first = await connect(clientSource, port);
    expect(first.getPeerCertificate().serialNumber).toBe(serial(s1));
    expect(await echo(first, 'before')).toBe('before');

    serverSource.setX509Svid(s2);
    expect(serverSource.generation).toBe(1);
    const second = await connect(clientSource, port);
    expect(second.getPeerCertificate().serialNumber).toBe(serial(s2));
    expect(await echo(first, 'after rotation')).toBe('after rotation');
    expect(await echo(second, 'new')).toBe('new');
  });

  it('a client SVID swap: the server sees the new client certificate on the next handshake', async () => {
    const [s1, c1, c2] = await Promise.all([svid(ca, SERVER), svid(ca, CLIENT), svid(ca, CLIENT)]);
    const serverSource = new MemorySource({ svid: s1, bundles: bundle });
    const clientSource = new MemorySource({ svid: c1, bundles: bundle });
    const { port, peers } = await echoServer(serverSource);
    const first = await connect(clientSource, port);
    expect(await echo(first, 'accepted')).toBe('accepted');
    clientSource.setX509Svid(c2);
    const second = await connect(clientSource, port);
    expect(await echo(first, 'x')).toBe('x');
    expect(await echo(second, 'y')).toBe('y');
    expect(peers).toEqual([`${CLIENT} ${serial(c1)}`, `${CLIENT} ${serial(c2)}`]);
  });

  it('a bundle swap on the server: new clients of the old CA are refused, the open one carries on', async () => {
    const [s1, c1] = await Promise.all([svid(ca, SERVER), svid(ca, CLIENT)]);
    const serverSource = new MemorySource({ svid: s1, bundles: bundle });
    const clientSource = new MemorySource({ svid: c1, bundles: bundle });
    const { port } = await echoServer(serverSource);
    const first = await connect(clientSource, port);
    // In TLS 1.3 the client is done before the server has checked it: wait for the server's yes.
    expect(await echo(first, 'accepted')).toBe('accepted');
    serverSource.setX509Bundles(X509Bundle.fromPem(TD, other.bundlePem));
    const refused = tracker.socket(
      tls.connect({
        ...tlsClientOptions({
          svidSource: clientSource,
          bundleSource: clientSource,
          authorizer: authorizeAny(),
        }),
        host: '127.0.0.1',
        port,
      }),
    );
    const ex = await exchange(refused);
    expect(ex.data).toBe('');
    expect(await echo(first, 'still here')).toBe('still here');
  });
});

describe('authorisation in the handshake', () => {
  it('our client refuses a server outside its expected identities with NotAuthorizedError', async () => {
    const [s1, c1] = await Promise.all([svid(ca, SERVER), svid(ca, CLIENT)]);
    const { port } = await echoServer(new MemorySource({ svid: s1, bundles: bundle }));
    const source = new MemorySource({ svid: c1, bundles: bundle });
    const good = tracker.socket(
      tls.connect({
        ...tlsClientOptions({ svidSource: source, bundleSource: source, authorizer: authorizeId(SERVER) }),
        host: '127.0.0.1',
        port,
      }),
    );
    await once(good, 'secureConnect');
    const bad = tracker.socket(
      tls.connect({
        ...tlsClientOptions({
          svidSource: source,
          bundleSource: source,
          authorizer: authorizeId(`spiffe://${TD}/other`),
        }),
        host: '127.0.0.1',
        port,
      }),
    );
    const ex = await exchange(bad);
    expect(ex.secure).toBe(false);
    expect(ex.error).toMatchObject({ code: 'ERR_IDENTITY_NOT_AUTHORIZED', peerId: SERVER });
  });

  it('our server refuses a client outside its policy and tells why in peerRejected', async () => {
    const [s1, c1] = await Promise.all([svid(ca, SERVER), svid(ca, CLIENT)]);
    const { port, rejected, peers } = await echoServer(
      new MemorySource({ svid: s1, bundles: bundle }),
      authorizeId(`spiffe://${TD}/someone-else`),
    );
    const source = new MemorySource({ svid: c1, bundles: bundle });
    const ex = await exchange(
      tracker.socket(
        tls.connect({
          ...tlsClientOptions({ svidSource: source, bundleSource: source, authorizer: authorizeAny() }),
          host: '127.0.0.1',
          port,
        }),
      ),
    );
    await until(() => rejected.length > 0);
    expect(ex.data).toBe('');
    expect(peers).toEqual([]);
    expect(rejected.map((e) => [e.code, (e as SpiffeError & { peerId: string }).peerId])).toEqual([
      ['ERR_IDENTITY_NOT_AUTHORIZED', CLIENT],
    ]);
  });
});
