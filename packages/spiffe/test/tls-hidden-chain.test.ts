/**
 * Servers on Node.js versions that hide the client's intermediates: on Node 24.21 and 26.8+ a
 * server's `getPeerCertificate(true)` returns the client's leaf alone (nodejs/node#65579), so our
 * verifier cannot rebuild a path OpenSSL has already validated. `verifyPeer` then verifies the
 * leaf (SPIFFE rules, validity, critical extensions) and takes OpenSSL's path only when every
 * authority OpenSSL trusts belongs to the leaf's own trust domain; otherwise it fails closed.
 *
 * Every test runs on every Node version: the outcome is the same where Node shows the chain
 * (full verification) and where it hides it (the leaf-only path), except for the one case where
 * failing closed is the point. The clients here are plain `tls.connect` sockets and the server's
 * own SVID comes from another CA, so the server has no other way to learn the intermediate.
 */
import * as tls from 'node:tls';
import { TestCa } from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeAny,
  BundleSet,
  enforceServerPeers,
  peerIdentity,
  SpiffeError,
  tlsServerOptions,
  verifyLeafOfTlsValidatedPath,
  X509Bundle,
  type X509BundleSource,
  X509Svid,
} from '../src/index.js';
import { answerPings, exchange, listen, Tracker, until } from './tls-harness.js';

const TD = 'example.org';
const OTHER_TD = 'other.example';
const tracker = new Tracker();
/** Issues the server's SVID (root-signed, no intermediate). */
let serverCa: TestCa;
/** Issues clients through an intermediate the server never sees otherwise. */
let clientCa: TestCa;
let otherCa: TestCa;
let serverSvid: X509Svid;
let oneDomain: X509Bundle;
let twoDomains: BundleSet;
/** Whether this Node hides a client's intermediates from the server (nodejs/node#65579). */
let hidesChain: boolean;

beforeAll(async () => {
  [serverCa, clientCa, otherCa] = await Promise.all([
    TestCa.create(TD),
    TestCa.create(TD, { intermediate: true }),
    TestCa.create(OTHER_TD),
  ]);
  const s = await serverCa.mint(`spiffe://${TD}/server`);
  serverSvid = X509Svid.parse(s.certChainPem, s.keyPem);
  oneDomain = X509Bundle.fromPem(TD, serverCa.bundlePem + clientCa.bundlePem);
  twoDomains = new BundleSet([oneDomain, X509Bundle.fromPem(OTHER_TD, otherCa.bundlePem)]);
  hidesChain = await probeHiddenChain();
});
afterEach(() => tracker.closeAll());

/** A real handshake: does the server see the client's intermediate? */
async function probeHiddenChain(): Promise<boolean> {
  const c = await clientCa.mint(`spiffe://${TD}/probe`);
  const server = tracker.server(
    tls.createServer({ ...tlsServerOptions({ svidSource: serverSvid, bundleSource: oneDomain }) }),
  );
  const linked = new Promise<boolean>((resolve) =>
    server.once('secureConnection', (s: tls.TLSSocket) => {
      resolve(s.getPeerCertificate(true).issuerCertificate?.raw !== undefined);
      s.destroy();
    }),
  );
  const port = await listen(server);
  tracker.socket(
    tls.connect({ host: '127.0.0.1', port, cert: c.certChainPem, key: c.keyPem, rejectUnauthorized: false }),
  );
  const result = !(await linked);
  await tracker.closeAll();
  return result;
}

interface Outcome {
  ok: boolean;
  peer?: string;
  rejected?: SpiffeError;
}

/** Our enforced server (bundles `bundles`) against a plain TLS client presenting `chainPem`. */
async function serve(
  bundles: X509BundleSource,
  client: { certChainPem: string; keyPem: string },
  now?: () => Date,
): Promise<Outcome> {
  const server = tracker.server(
    tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundles })),
  );
  enforceServerPeers(server, { bundleSource: bundles, authorizer: authorizeAny(), ...(now ? { now } : {}) });
  const rejected: Error[] = [];
  const peers: string[] = [];
  server.on('peerRejected', (err: Error) => rejected.push(err));
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    peers.push(peerIdentity(socket).toString());
    answerPings(socket);
  });
  const port = await listen(server);
  const socket = tracker.socket(
    tls.connect({
      host: '127.0.0.1',
      port,
      cert: client.certChainPem,
      key: client.keyPem,
      rejectUnauthorized: false,
      minVersion: 'TLSv1.3',
    }),
  );
  const ex = await exchange(socket);
  await until(() => rejected.length + peers.length > 0);
  const err = rejected[0];
  return {
    ok: ex.data === 'pong',
    ...(peers[0] !== undefined ? { peer: peers[0] } : {}),
    ...(err instanceof SpiffeError ? { rejected: err } : {}),
  };
}

describe('a client issued through an intermediate, on any Node version', () => {
  it('is accepted and identified by a server trusting one trust domain', async () => {
    const c = await clientCa.mint(`spiffe://${TD}/client`);
    expect(await serve(oneDomain, c)).toEqual({ ok: true, peer: `spiffe://${TD}/client` });
  });

  it('is refused for a leaf that breaks the SPIFFE rules OpenSSL does not know (two URI SANs)', async () => {
    const c = await clientCa.mint(`spiffe://${TD}/client`, { defects: ['two-uri-sans'] });
    const o = await serve(oneDomain, c);
    expect(o.ok).toBe(false);
    expect(o.peer).toBeUndefined();
    expect(o.rejected?.code).toBe('ERR_SVID_INVALID');
  });

  it('is refused once expired at the verification time we give (our clock, not OpenSSL’s)', async () => {
    const c = await clientCa.mint(`spiffe://${TD}/client`);
    const later = new Date(c.notAfter.getTime() + 60_000);
    const o = await serve(oneDomain, c, () => later);
    expect(o.ok).toBe(false);
    expect(o.rejected?.code).toBe('ERR_CERTIFICATE_EXPIRED');
  });

  it('with bundles of two trust domains: verified where Node shows the chain, refused where it hides it', async () => {
    const c = await clientCa.mint(`spiffe://${TD}/client`);
    const o = await serve(twoDomains, c);
    if (!hidesChain) {
      expect(o).toEqual({ ok: true, peer: `spiffe://${TD}/client` });
      return;
    }
    // OpenSSL's store holds OTHER_TD's authority too: its verdict cannot prove the path ends in
    // the leaf's own trust domain. Fail closed, and say why.
    expect(o.ok).toBe(false);
    expect(o.rejected?.code).toBe('ERR_CHAIN_UNTRUSTED');
    expect(o.rejected?.message).toContain('nodejs/node#65579');
  });
});

describe('verifyLeafOfTlsValidatedPath', () => {
  it('applies the leaf rules, the trust domain bundle and the validity window', async () => {
    const good = await clientCa.mint(`spiffe://${TD}/client`);
    const v = verifyLeafOfTlsValidatedPath(good.leafDer, oneDomain);
    expect(v.id.toString()).toBe(`spiffe://${TD}/client`);
    expect(v.verifiedChain).toHaveLength(1);
    expect(v.bundle).toBe(oneDomain);

    const ca = await clientCa.mint(`spiffe://${TD}/ca`, { defects: ['leaf-ca'] });
    expect(() => verifyLeafOfTlsValidatedPath(ca.leafDer, oneDomain)).toThrow(
      expect.objectContaining({ code: 'ERR_SVID_INVALID' }),
    );
    const foreign = await otherCa.mint(`spiffe://${OTHER_TD}/x`);
    expect(() => verifyLeafOfTlsValidatedPath(foreign.leafDer, oneDomain)).toThrow(
      expect.objectContaining({ code: 'ERR_NO_BUNDLE_FOR_TRUST_DOMAIN' }),
    );
    expect(() =>
      verifyLeafOfTlsValidatedPath(good.leafDer, oneDomain, {
        now: new Date(good.notBefore.getTime() - 1_000),
      }),
    ).toThrow(expect.objectContaining({ code: 'ERR_CERTIFICATE_NOT_YET_VALID' }));
  });
});
