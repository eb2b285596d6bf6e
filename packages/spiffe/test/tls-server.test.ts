/**
 * The server-side pieces around the handshake: enforcement on an http2 server, peerIdentity on
 * sockets we did and did not verify, and credential refresh for sources without onChange.
 */
import { once } from 'node:events';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { TestCa } from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeAny,
  authorizeId,
  enforceServerPeers,
  keepServerCredentialsFresh,
  PeerNotVerifiedError,
  peerIdentity,
  type SpiffeError,
  tlsClientOptions,
  tlsServerOptions,
  X509Bundle,
  X509Svid,
  type X509SvidSource,
} from '../src/index.js';
import { answerPings, exchange, listen, Tracker, until } from './tls-harness.js';

const TD = 'example.org';
let ca: TestCa;
let bundle: X509Bundle;
let server1: X509Svid;
let client1: X509Svid;
const tracker = new Tracker();
const cleanups: (() => void)[] = [];

beforeAll(async () => {
  ca = await TestCa.create(TD, { intermediate: true });
  bundle = X509Bundle.fromPem(TD, ca.bundlePem);
  const [s, c] = await Promise.all([ca.mint(`spiffe://${TD}/server`), ca.mint(`spiffe://${TD}/client`)]);
  server1 = X509Svid.parse(s.certChainPem, s.keyPem);
  client1 = X509Svid.parse(c.certChainPem, c.keyPem);
});
afterEach(async () => {
  for (const c of cleanups.splice(0)) c();
  await tracker.closeAll();
});

describe('enforceServerPeers on an http2 server', () => {
  it('an authorised client gets streams; a refused one never reaches the session', async () => {
    const server = http2.createSecureServer(tlsServerOptions({ svidSource: server1, bundleSource: bundle }));
    tracker.server(server);
    cleanups.push(
      enforceServerPeers(server, { bundleSource: bundle, authorizer: authorizeId(`spiffe://${TD}/client`) }),
    );
    const sessions: string[] = [];
    const rejected: SpiffeError[] = [];
    server.on('session', (s) => sessions.push(peerIdentity(s.socket as tls.TLSSocket).toString()));
    server.on('peerRejected', (e: SpiffeError) => rejected.push(e));
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;

    const good = http2.connect(`https://127.0.0.1:${port}`, {
      ...tlsClientOptions({ svidSource: client1, bundleSource: bundle, authorizer: authorizeAny() }),
    });
    cleanups.push(() => good.destroy());
    const req = good.request({ ':path': '/' });
    const [headers] = await once(req, 'response');
    expect(headers[':status']).toBe(200);
    req.resume();
    await once(req, 'end');

    const m = await ca.mint(`spiffe://${TD}/intruder`);
    const intruder = X509Svid.parse(m.certChainPem, m.keyPem);
    const bad = http2.connect(`https://127.0.0.1:${port}`, {
      ...tlsClientOptions({ svidSource: intruder, bundleSource: bundle, authorizer: authorizeAny() }),
    });
    bad.on('error', () => {});
    cleanups.push(() => bad.destroy());
    await once(bad, 'close');
    await until(() => rejected.length > 0);
    expect(sessions).toEqual([`spiffe://${TD}/client`]);
    expect(rejected.map((e) => e.code)).toEqual(['ERR_IDENTITY_NOT_AUTHORIZED']);
  });

  it('stops enforcing when unsubscribed, and refuses to wrap a server twice', async () => {
    const server = tracker.server(
      tls.createServer(tlsServerOptions({ svidSource: server1, bundleSource: bundle })),
    );
    const stop = enforceServerPeers(server, { bundleSource: bundle, authorizer: () => false });
    expect(() => enforceServerPeers(server, { bundleSource: bundle, authorizer: authorizeAny() })).toThrow(
      TypeError,
    );
    stop();
    stop();
    server.on('secureConnection', answerPings);
    const port = await listen(server);
    const opts = tlsClientOptions({ svidSource: client1, bundleSource: bundle, authorizer: authorizeAny() });
    expect((await exchange(tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port })))).data).toBe(
      'pong',
    );
  });
});

describe('peerIdentity', () => {
  it('needs a bundle source for sockets no hbone option verified', async () => {
    // A plain server (OpenSSL verification only): peerIdentity cannot vouch for its clients.
    const server = tracker.server(
      tls.createServer({
        key: server1.privateKeyPem,
        cert: server1.certChainPem,
        ca: [ca.root.pem],
        requestCert: true,
        rejectUnauthorized: true,
      }),
    );
    const results: unknown[] = [];
    server.on('secureConnection', (s: tls.TLSSocket) => {
      try {
        peerIdentity(s);
      } catch (err) {
        results.push(err);
      }
      results.push(peerIdentity(s, bundle).toString());
      results.push(peerIdentity(s).toString()); // cached on the socket now
      answerPings(s);
    });
    const port = await listen(server);
    const opts = tlsClientOptions({ svidSource: client1, bundleSource: bundle, authorizer: authorizeAny() });
    await exchange(tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port })));
    expect(results[0]).toBeInstanceOf(PeerNotVerifiedError);
    expect(results.slice(1)).toEqual([`spiffe://${TD}/client`, `spiffe://${TD}/client`]);
  });
});

describe('keepServerCredentialsFresh', () => {
  it('polls sources without onChange and swaps the server SVID', async () => {
    const m = await ca.mint(`spiffe://${TD}/server`);
    const server2 = X509Svid.parse(m.certChainPem, m.keyPem);
    let current = server1;
    let generation = 0;
    const source: X509SvidSource = {
      get generation() {
        return generation;
      },
      getX509Svid: () => current,
    };
    const server = tracker.server(
      tls.createServer(tlsServerOptions({ svidSource: source, bundleSource: bundle })),
    );
    cleanups.push(
      keepServerCredentialsFresh(server, { svidSource: source, bundleSource: bundle, pollMs: 10 }),
    );
    server.on('secureConnection', answerPings);
    const port = await listen(server);
    const serialSeen = async () => {
      const opts = tlsClientOptions({
        svidSource: client1,
        bundleSource: bundle,
        authorizer: authorizeAny(),
      });
      const s = tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port }));
      await once(s, 'secureConnect');
      const serial = s.getPeerCertificate().serialNumber;
      s.destroy();
      return serial;
    };
    expect(await serialSeen()).toBe(server1.leaf.serialNumber.toUpperCase());
    current = server2;
    generation++;
    await new Promise((r) => setTimeout(r, 50));
    expect(await serialSeen()).toBe(server2.leaf.serialNumber.toUpperCase());
  });
});
