/**
 * What SPIFFE verification adds to a mutual TLS 1.3 handshake.
 *
 * Sequential handshakes on 127.0.0.1, each counted from `tls.connect` until both sides are done
 * (the client's `secureConnect` and the server's `secureConnection`, which with our options comes
 * after `enforceServerPeers` verified the client). Two variants with the same certificates
 * (P-256, leaf + intermediate, one trust domain), TLS 1.3, AES-GCM, ALPN h2:
 *
 * - ours: `tlsClientOptions` (fresh per connection, as a pool would call it) and
 *   `tlsServerOptions` + `enforceServerPeers`: OpenSSL's chain check, then our per-trust-domain
 *   verification and an authoriser on both sides.
 * - openssl: plain Node options, verified by OpenSSL alone (`ca` + `rejectUnauthorized`, no
 *   host name check). The client reuses one SecureContext, as ours does, so the difference is
 *   the verification only.
 *
 * Short rounds alternate between the variants so drift hits both; `ratio_time` is the median of
 * the per-round ratios. Prints one JSON line.
 * Run: node --conditions=@hbone/source --import tsx bench/spiffe-handshake.ts [handshakes]
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { pathToFileURL } from 'node:url';
import {
  authorizeId,
  authorizeMemberOf,
  enforceServerPeers,
  HBONE_CIPHERSUITES,
  tlsClientOptions,
  tlsServerOptions,
  X509Bundle,
  X509Svid,
} from '../packages/spiffe/src/index.js';
import { TestCa } from '../packages/testkit/src/index.js';

export interface SpiffeHandshakeResult {
  name: 'spiffe-handshake';
  handshakes: number;
  ours_hs_per_s: number;
  openssl_hs_per_s: number;
  /**
   * Time per handshake, ours / OpenSSL alone: the cost of our verification (target <= 1.10).
   * The median over alternating rounds.
   */
  ratio_time: number;
}

interface Variant {
  server: tls.Server;
  port: number;
  connectOptions: () => tls.ConnectionOptions;
  /** Resolves when the server side of the next connection is done. */
  nextAccepted: () => Promise<void>;
}

async function listen(server: tls.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

function acceptQueue(server: tls.Server): () => Promise<void> {
  const waiting: (() => void)[] = [];
  let early = 0;
  server.on('secureConnection', (s: tls.TLSSocket) => {
    s.on('error', () => {});
    s.destroy();
    const w = waiting.shift();
    if (w) w();
    else early++;
  });
  return () =>
    new Promise<void>((resolve) => {
      if (early > 0) {
        early--;
        resolve();
      } else waiting.push(resolve);
    });
}

async function handshake(v: Variant): Promise<void> {
  const accepted = v.nextAccepted();
  const socket = tls.connect({ ...v.connectOptions(), host: '127.0.0.1', port: v.port });
  socket.on('error', (err) => {
    throw err;
  });
  await once(socket, 'secureConnect');
  await accepted;
  socket.destroy();
}

async function timeRound(v: Variant, n: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await handshake(v);
  return Number(process.hrtime.bigint() - start) / 1e6;
}

export async function run(
  options: { handshakes?: number; maxSeconds?: number } = {},
): Promise<SpiffeHandshakeResult> {
  const total = options.handshakes ?? 300;
  const deadline = Date.now() + (options.maxSeconds ?? 20) * 1000;
  const td = 'bench.local';
  const ca = await TestCa.create(td, { intermediate: true });
  const [s, c] = await Promise.all([
    ca.mint(`spiffe://${td}/ns/bench/sa/server`),
    ca.mint(`spiffe://${td}/ns/bench/sa/client`),
  ]);
  const bundle = X509Bundle.fromPem(td, ca.bundlePem);
  const serverSvid = X509Svid.parse(s.certChainPem, s.keyPem);
  const clientSvid = X509Svid.parse(c.certChainPem, c.keyPem);

  const oursServer = tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundle }));
  const stopEnforcing = enforceServerPeers(oursServer, {
    bundleSource: bundle,
    authorizer: authorizeMemberOf(td),
  });
  const ours: Variant = {
    server: oursServer,
    port: await listen(oursServer),
    connectOptions: () =>
      tlsClientOptions({
        svidSource: clientSvid,
        bundleSource: bundle,
        authorizer: authorizeId(serverSvid.id),
      }),
    nextAccepted: acceptQueue(oursServer),
  };

  const common = {
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ciphers: HBONE_CIPHERSUITES,
    ca: [ca.root.pem],
  };
  const plainServer = tls.createServer({
    ...common,
    key: s.keyPem,
    cert: s.certChainPem,
    requestCert: true,
    rejectUnauthorized: true,
    ALPNProtocols: ['h2'],
  });
  const plainContext = tls.createSecureContext({ ...common, key: c.keyPem, cert: c.certChainPem });
  const openssl: Variant = {
    server: plainServer,
    port: await listen(plainServer),
    connectOptions: () => ({
      secureContext: plainContext,
      ALPNProtocols: ['h2'],
      servername: '',
      rejectUnauthorized: true,
      checkServerIdentity: () => undefined,
    }),
    nextAccepted: acceptQueue(plainServer),
  };

  try {
    const warm = Math.min(30, total);
    await timeRound(ours, warm);
    await timeRound(openssl, warm);
    let oursMs = 0;
    let opensslMs = 0;
    let done = 0;
    // Short alternating rounds; the ratio is the median of the per-round ratios, so a burst of
    // load from elsewhere on the machine skews one round, not the answer.
    const ratios: number[] = [];
    const round = Math.max(1, Math.min(25, Math.floor(total / 6)));
    while (done < total && Date.now() < deadline) {
      const n = Math.min(round, total - done);
      let a: number;
      let b: number;
      // Alternate which variant goes first, so neither always runs on a warmer process.
      if (ratios.length % 2 === 0) {
        a = await timeRound(ours, n);
        b = await timeRound(openssl, n);
      } else {
        b = await timeRound(openssl, n);
        a = await timeRound(ours, n);
      }
      oursMs += a;
      opensslMs += b;
      ratios.push(a / b);
      done += n;
    }
    ratios.sort((x, y) => x - y);
    const mid = ratios.length >> 1;
    const median = ratios.length % 2 === 1 ? ratios[mid]! : (ratios[mid - 1]! + ratios[mid]!) / 2;
    const round3 = (x: number) => Math.round(x * 1000) / 1000;
    return {
      name: 'spiffe-handshake',
      handshakes: done,
      ours_hs_per_s: Math.round((done / oursMs) * 1000),
      openssl_hs_per_s: Math.round((done / opensslMs) * 1000),
      ratio_time: round3(median),
    };
  } finally {
    stopEnforcing();
    await Promise.all([ours.server, openssl.server].map((srv) => new Promise((r) => srv.close(r))));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 300);
  run({ handshakes: Number.isFinite(n) && n > 0 ? n : 300 }).then(
    (r) => console.log(JSON.stringify(r)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
