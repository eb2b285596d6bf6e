/**
 * Every verifier case again, as a real TLS 1.3 handshake on 127.0.0.1, in both roles: our server
 * rejecting a bad client, and our client rejecting a bad server. The bad peer is plain Node TLS
 * presenting the case's chain; each negative runs beside its control (same CA, same bundles).
 *
 * Our TLS options keep OpenSSL's chain check (against the union of all authorities) as a first
 * layer; cases it already refuses fail with OpenSSL's error, the others must fail with ours.
 */
import * as tls from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeAny,
  BundleSet,
  enforceServerPeers,
  peerIdentity,
  SpiffeError,
  tlsClientOptions,
  tlsServerOptions,
  X509Svid,
} from '../src/index.js';
import { answerPings, exchange, listen, Tracker, until } from './tls-harness.js';
import { type Cas, CLIENT_ID, makeCas, type Presented, SERVER_ID, verifierCases } from './verifier-cases.js';

let cas: Cas;
let serverSvid: X509Svid;
let clientSvid: X509Svid;
const tracker = new Tracker();

beforeAll(async () => {
  cas = await makeCas();
  const [s, c] = await Promise.all([cas.a.mint(SERVER_ID), cas.a.mint(CLIENT_ID)]);
  serverSvid = X509Svid.parse(s.certChainPem, s.keyPem);
  clientSvid = X509Svid.parse(c.certChainPem, c.keyPem);
});
afterEach(() => tracker.closeAll());

const serverCreds = () => ({ cert: serverSvid.certChainPem, key: serverSvid.privateKeyPem });
const clientCreds = () => ({ cert: clientSvid.certChainPem, key: clientSvid.privateKeyPem });

interface Outcome {
  /** Application bytes crossed both ways. */
  ok: boolean;
  /** Our typed error code, if our layer rejected. */
  ours?: string;
  /** OpenSSL's error code, if OpenSSL rejected. */
  openssl?: string;
  peer?: string;
}

/** Our server (SVID from A, the case's bundles) against a plain client presenting `p`. */
async function ourServerVersus(p: Presented): Promise<Outcome> {
  const rejected: Error[] = [];
  const opensslErrors: Error[] = [];
  const peers: string[] = [];
  const bundles = p.bundles;
  const server = tracker.server(
    tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundles })),
  );
  enforceServerPeers(server, { bundleSource: bundles, authorizer: authorizeAny() });
  server.on('peerRejected', (err: Error) => rejected.push(err));
  server.on('tlsClientError', (err: Error) => opensslErrors.push(err));
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    peers.push(peerIdentity(socket).toString());
    answerPings(socket);
  });
  const port = await listen(server);
  const client = tracker.socket(
    tls.connect({
      host: '127.0.0.1',
      port,
      cert: p.chainPem,
      key: p.svid.keyPem,
      ca: [cas.a.root.pem],
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
      ALPNProtocols: ['h2'],
    }),
  );
  const ex = await exchange(client);
  await until(() => rejected.length + opensslErrors.length + peers.length > 0);
  const ours = rejected[0];
  return {
    ok: ex.data === 'pong',
    ours: ours instanceof SpiffeError ? ours.code : undefined,
    openssl: opensslErrors[0] ? String((opensslErrors[0] as NodeJS.ErrnoException).code) : undefined,
    peer: peers[0],
  };
}

/** Our client (SVID from A, the case's bundles) against a plain server presenting `p`. */
async function ourClientVersus(p: Presented): Promise<Outcome> {
  const server = tracker.server(
    tls.createServer({ cert: p.chainPem, key: p.svid.keyPem, minVersion: 'TLSv1.3', ALPNProtocols: ['h2'] }),
  );
  server.on('secureConnection', answerPings);
  const port = await listen(server);
  const opts = tlsClientOptions({
    svidSource: clientSvid,
    bundleSource: p.bundles,
    authorizer: authorizeAny(),
  });
  const client = tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port }));
  let peer: string | undefined;
  client.once('secureConnect', () => {
    peer = peerIdentity(client).toString();
  });
  const ex = await exchange(client);
  const err = ex.error;
  return {
    ok: ex.data === 'pong',
    ours: err instanceof SpiffeError ? err.code : undefined,
    openssl:
      err !== undefined && !(err instanceof SpiffeError)
        ? String((err as NodeJS.ErrnoException).code)
        : undefined,
    peer,
  };
}

function expectOutcome(o: Outcome, expected: string, opensslRejects: boolean, claimedId: string): void {
  if (expected === 'ok') {
    expect(o).toMatchObject({ ok: true, peer: claimedId });
    return;
  }
  expect(o.ok).toBe(false);
  expect(o.peer).toBeUndefined();
  // Which layer refused is part of the contract: OpenSSL's union-of-roots check for chain and
  // validity failures, ours for the SPIFFE rules it cannot express.
  if (opensslRejects) expect(o).toMatchObject({ ours: undefined, openssl: expect.any(String) });
  else expect(o.ours).toBe(expected);
}

const caseNames = verifierCases({} as Cas, CLIENT_ID).map((c) => c.name);

describe('TLS 1.3: our server rejects a bad client', () => {
  it.each(caseNames)('%s', async (name) => {
    const c = verifierCases(cas, CLIENT_ID).find((x) => x.name === name)!;
    const control = await c.control();
    const good = await ourServerVersus(control);
    expect(good).toMatchObject({ ok: true });
    expect(good.peer).toBe(control.svid.id);
    await tracker.closeAll();
    const negative = await c.negative();
    expectOutcome(await ourServerVersus(negative), c.expected, c.opensslRejects, negative.svid.id);
  });
});

describe('TLS 1.3: our client rejects a bad server', () => {
  it.each(caseNames)('%s', async (name) => {
    const c = verifierCases(cas, SERVER_ID).find((x) => x.name === name)!;
    const control = await c.control();
    const good = await ourClientVersus(control);
    expect(good).toMatchObject({ ok: true, peer: control.svid.id });
    await tracker.closeAll();
    const negative = await c.negative();
    expectOutcome(await ourClientVersus(negative), c.expected, c.opensslRejects, negative.svid.id);
  });
});

describe('TLS 1.3 envelope', () => {
  it('negotiates TLS 1.3, AES-GCM, ALPN h2, sends no SNI, and both sides see the verified peer', async () => {
    const bundles = new BundleSet([cas.bundleA]);
    const server = tracker.server(
      tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundles })),
    );
    enforceServerPeers(server, { bundleSource: bundles, authorizer: authorizeAny() });
    const seen: Record<string, unknown>[] = [];
    server.on('secureConnection', (s: tls.TLSSocket) => {
      seen.push({
        protocol: s.getProtocol(),
        cipher: s.getCipher().name,
        alpn: s.alpnProtocol,
        sni: (s as tls.TLSSocket & { servername?: unknown }).servername,
        peer: peerIdentity(s).toString(),
      });
      answerPings(s);
    });
    const port = await listen(server);
    const opts = tlsClientOptions({
      svidSource: clientSvid,
      bundleSource: bundles,
      authorizer: authorizeAny(),
    });
    expect(opts).toMatchObject({
      minVersion: 'TLSv1.3',
      maxVersion: 'TLSv1.3',
      ciphers: 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256',
      ALPNProtocols: ['h2'],
      servername: '',
      rejectUnauthorized: true,
    });
    const client = tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port }));
    const ex = await exchange(client);
    expect(ex.data).toBe('pong');
    expect(seen).toEqual([
      { protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384', alpn: 'h2', sni: false, peer: CLIENT_ID },
    ]);
  });

  it('presents leaf and intermediates, never the root, in both roles', async () => {
    // Peers that trust an unrelated CA link only what was on the wire: no store to add a root from.
    const unrelated = cas.c.root.pem;
    const sent = (s: tls.TLSSocket): string[] => {
      const out: string[] = [];
      const seen = new Set<object>();
      let c: tls.DetailedPeerCertificate | undefined = s.getPeerCertificate(true);
      while (c?.raw && !seen.has(c)) {
        seen.add(c);
        out.push(c.fingerprint256);
        c = c.issuerCertificate;
      }
      return out;
    };
    const colon = (hex: string) => hex.toUpperCase().match(/../g)!.join(':');
    const bundles = new BundleSet([cas.bundleA]);

    const ours = tracker.server(
      tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundles })),
    );
    const port = await listen(ours);
    const plainClient = tracker.socket(
      tls.connect({ host: '127.0.0.1', port, ca: [unrelated], rejectUnauthorized: false, ...clientCreds() }),
    );
    await new Promise((r) => plainClient.once('secureConnect', r));
    expect(sent(plainClient)).toEqual(serverSvid.certificates.map((c) => colon(c.fingerprint256)));

    const plainServer = tracker.server(
      tls.createServer({ ...serverCreds(), ca: [unrelated], requestCert: true, rejectUnauthorized: false }),
    );
    const received: string[][] = [];
    plainServer.on('secureConnection', (s: tls.TLSSocket) => {
      received.push(sent(s));
      answerPings(s);
    });
    const port2 = await listen(plainServer);
    const opts = tlsClientOptions({
      svidSource: clientSvid,
      bundleSource: bundles,
      authorizer: authorizeAny(),
    });
    // Our client would refuse this server (its chain is fine, but we only care what we sent).
    await exchange(tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port: port2 })));
    expect(received[0]).toEqual(clientSvid.certificates.map((c) => colon(c.fingerprint256)));
  });

  it('sends the SNI it is asked to send', async () => {
    const bundles = new BundleSet([cas.bundleA]);
    const server = tracker.server(
      tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundles })),
    );
    const names: unknown[] = [];
    server.on('secureConnection', (s: tls.TLSSocket) => {
      names.push((s as tls.TLSSocket & { servername?: unknown }).servername);
      answerPings(s);
    });
    const port = await listen(server);
    const opts = tlsClientOptions({
      svidSource: clientSvid,
      bundleSource: bundles,
      authorizer: authorizeAny(),
      sni: 'outbound_.8080_._.server.default.svc.cluster.local',
    });
    await exchange(tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port })));
    expect(names).toEqual(['outbound_.8080_._.server.default.svc.cluster.local']);
  });
});
