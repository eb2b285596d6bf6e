/**
 * Certificates for the benchmarks: one in-memory SPIFFE CA (`@hbone/testkit`'s TestCa, ECDSA
 * P-256 as ztunnel uses) and an SVID per role. Everything is PEM so it crosses to the server
 * process over IPC; each process builds its own `StaticSource` from it. The raw TLS baselines use
 * the very same key, chain and CA.
 */
import * as tls from 'node:tls';
import { HBONE_CIPHERSUITES, StaticSource, X509Bundle, X509Svid } from '../../packages/spiffe/src/index.js';
import { TestCa } from '../../packages/testkit/src/index.js';

export const TRUST_DOMAIN = 'cluster.local';
export const SERVER_ID = 'spiffe://cluster.local/ns/bench/sa/server';
export const CLIENT_ID = 'spiffe://cluster.local/ns/bench/sa/client';
export const GATEWAY_ID = 'spiffe://cluster.local/ns/istio-eastwest/sa/eastwest';
export const DEST_ID = 'spiffe://cluster.local/ns/bench/sa/destination';

export interface PemSvid {
  readonly id: string;
  readonly certChainPem: string;
  readonly keyPem: string;
}

export interface Creds {
  readonly trustDomain: string;
  readonly bundlePem: string;
  readonly server: PemSvid;
  readonly client: PemSvid;
  readonly gateway: PemSvid;
  readonly dest: PemSvid;
}

/**
 * Leaves signed by the root by default (istiod's self-signed CA does this); set
 * `HBONE_BENCH_INTERMEDIATE=1` for root -> intermediate -> leaf (a plugged-in CA).
 */
export function withIntermediate(): boolean {
  return process.env.HBONE_BENCH_INTERMEDIATE === '1';
}

export async function mintCreds(): Promise<Creds> {
  const ca = await TestCa.create(TRUST_DOMAIN, { intermediate: withIntermediate() });
  const pem = async (id: string): Promise<PemSvid> => {
    const m = await ca.mint(id);
    return { id, certChainPem: m.certChainPem, keyPem: m.keyPem };
  };
  return {
    trustDomain: TRUST_DOMAIN,
    bundlePem: ca.bundlePem,
    server: await pem(SERVER_ID),
    client: await pem(CLIENT_ID),
    gateway: await pem(GATEWAY_ID),
    dest: await pem(DEST_ID),
  };
}

/** What HBONE client and server options take: `{ svidSource, bundleSource }`. */
export function sourcesFor(
  creds: Creds,
  who: PemSvid,
): { svidSource: StaticSource; bundleSource: StaticSource } {
  const svid = X509Svid.parse(who.certChainPem, who.keyPem);
  const bundle = X509Bundle.fromPem(creds.trustDomain, creds.bundlePem);
  const source = new StaticSource({ svid, bundles: [bundle] });
  return { svidSource: source, bundleSource: source };
}

/** The TLS settings both baselines share with HBONE: TLS 1.3 only, ztunnel's suites, ALPN h2. */
function common(creds: Creds, who: PemSvid) {
  return {
    key: who.keyPem,
    cert: who.certChainPem,
    ca: [creds.bundlePem],
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ciphers: HBONE_CIPHERSUITES,
    ALPNProtocols: ['h2'],
  };
}

/** Raw mutual TLS 1.3 server options: client certificate required and verified by OpenSSL. */
export function rawTlsServerOptions(creds: Creds, who: PemSvid): tls.TlsOptions {
  return { ...common(creds, who), requestCert: true, rejectUnauthorized: true };
}

/**
 * Raw mutual TLS 1.3 client options: the chain is verified by OpenSSL against the same CA; the
 * host name check is skipped (the leaf has a SPIFFE URI SAN only), and no SNI is sent, as HBONE.
 * The SecureContext is built once, as the HBONE client caches its own.
 */
export function rawTlsClientOptions(creds: Creds, who: PemSvid): tls.ConnectionOptions {
  const c = common(creds, who);
  return {
    secureContext: tls.createSecureContext(c),
    minVersion: c.minVersion,
    maxVersion: c.maxVersion,
    ciphers: c.ciphers,
    ALPNProtocols: c.ALPNProtocols,
    servername: '',
    rejectUnauthorized: true,
    checkServerIdentity: () => undefined,
  };
}
