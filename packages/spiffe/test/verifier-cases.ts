/**
 * The verifier's cases, shared by the pure tests (verify.test.ts) and the TLS handshake tests
 * (tls-verify.test.ts): every SVID_DEFECTS switch plus the federation and chain cases. Each case
 * is a negative (or, for the switches the standard allows, a positive) beside a control that
 * uses the same CA and bundles without the defect.
 */
import { type MintedSvid, SVID_DEFECTS, type SvidDefect, TestCa } from '@hbone/testkit';
import { BundleSet, type SpiffeErrorCode, X509Bundle } from '../src/index.js';

export const TD_A = 'example.org';
export const TD_B = 'other.org';
export const TD_C = 'third.org';
export const CLIENT_ID = `spiffe://${TD_A}/ns/default/sa/client`;
export const SERVER_ID = `spiffe://${TD_A}/ns/default/sa/server`;

/** What a case presents (as a client or as a server) and what the other side trusts. */
export interface Presented {
  svid: MintedSvid;
  /** The chain actually sent (may differ from svid.chainDer, e.g. a missing intermediate). */
  chainDer: Uint8Array[];
  chainPem: string;
  /** The verifying side's bundles. */
  bundles: BundleSet;
}

export interface VerifierCase {
  name: string;
  /** `'ok'`, or the code our verifier must give. */
  expected: SpiffeErrorCode | 'ok';
  /**
   * When OpenSSL's own chain check (against the union of authorities, which our TLS options keep
   * as a first layer) rejects the peer before our verifier runs.
   */
  opensslRejects: boolean;
  negative: () => Promise<Presented>;
  control: () => Promise<Presented>;
}

export interface Cas {
  a: TestCa;
  b: TestCa;
  c: TestCa;
  bundleA: X509Bundle;
  bundleB: X509Bundle;
  bundleC: X509Bundle;
}

export async function makeCas(): Promise<Cas> {
  const [a, b, c] = await Promise.all([
    TestCa.create(TD_A, { intermediate: true }),
    TestCa.create(TD_B),
    TestCa.create(TD_C),
  ]);
  return {
    a,
    b,
    c,
    bundleA: X509Bundle.fromPem(TD_A, a.bundlePem),
    bundleB: X509Bundle.fromPem(TD_B, b.bundlePem),
    bundleC: X509Bundle.fromPem(TD_C, c.bundlePem),
  };
}

function pemOf(ders: Uint8Array[]): string {
  return ders
    .map((d) => {
      const b64 = Buffer.from(d).toString('base64');
      return `-----BEGIN CERTIFICATE-----\n${b64.match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`;
    })
    .join('');
}

export function presented(svid: MintedSvid, bundles: BundleSet, chainDer = svid.chainDer): Presented {
  return { svid, chainDer, chainPem: pemOf(chainDer), bundles };
}

const DEFECT_CODES: Record<SvidDefect, SpiffeErrorCode | 'ok'> = {
  expired: 'ERR_CERTIFICATE_EXPIRED',
  'not-yet-valid': 'ERR_CERTIFICATE_NOT_YET_VALID',
  'wrong-ca': 'ERR_CHAIN_UNTRUSTED',
  'leaf-ca': 'ERR_SVID_INVALID',
  'key-cert-sign': 'ERR_SVID_INVALID',
  'crl-sign': 'ERR_SVID_INVALID',
  'two-uri-sans': 'ERR_SVID_INVALID',
  'no-uri-san': 'ERR_SVID_INVALID',
  'non-spiffe-uri': 'ERR_SVID_INVALID',
  'no-path': 'ERR_SVID_INVALID',
  'dns-san': 'ok',
  'empty-subject-critical-san': 'ok',
  'unknown-critical-extension': 'ERR_CHAIN_UNTRUSTED',
  'intermediate-not-ca': 'ERR_CHAIN_UNTRUSTED',
  'path-len-exceeded': 'ERR_CHAIN_UNTRUSTED',
};

// What OpenSSL's default chain verification already refuses (X509_verify_cert with Node's flags).
const OPENSSL_REJECTS = new Set<SvidDefect>([
  'expired',
  'not-yet-valid',
  'wrong-ca',
  'unknown-critical-extension',
  'intermediate-not-ca',
  'path-len-exceeded',
]);

/** The cases; `id` is the identity the presenting side claims. */
export function verifierCases(cas: Cas, id: string): VerifierCase[] {
  const onlyA = () => new BundleSet([cas.bundleA]);
  const aAndB = () => new BundleSet([cas.bundleA, cas.bundleB]);
  const cases: VerifierCase[] = SVID_DEFECTS.map((info) => ({
    name: `defect ${info.defect}`,
    expected: DEFECT_CODES[info.defect],
    opensslRejects: OPENSSL_REJECTS.has(info.defect),
    negative: async () => presented(await cas.a.mint(id, { defects: [info.defect] }), onlyA()),
    control: async () => presented(await cas.a.mint(id), onlyA()),
  }));
  const path = new URL(id).pathname;
  cases.push(
    {
      // A leaf claiming trust domain B, issued by A's CA, with both bundles loaded: OpenSSL's union
      // of roots accepts it; only per-trust-domain verification catches it.
      name: 'cross-trust-domain leaf with both bundles loaded',
      expected: 'ERR_CHAIN_UNTRUSTED',
      opensslRejects: false,
      negative: async () => presented(await cas.a.mint(`spiffe://${TD_B}${path}`), aAndB()),
      control: async () => presented(await cas.b.mint(`spiffe://${TD_B}${path}`), aAndB()),
    },
    {
      name: 'no bundle for the trust domain',
      expected: 'ERR_NO_BUNDLE_FOR_TRUST_DOMAIN',
      opensslRejects: true,
      negative: async () => presented(await cas.c.mint(`spiffe://${TD_C}${path}`), aAndB()),
      control: async () => presented(await cas.a.mint(id), aAndB()),
    },
    {
      // Leaf of A's CA claims C, whose bundle is missing; OpenSSL accepts (A's root is loaded).
      name: 'no bundle for the claimed trust domain, chain valid for another',
      expected: 'ERR_NO_BUNDLE_FOR_TRUST_DOMAIN',
      opensslRejects: false,
      negative: async () => presented(await cas.a.mint(`spiffe://${TD_C}${path}`), aAndB()),
      control: async () => presented(await cas.a.mint(id), aAndB()),
    },
    {
      name: 'chain missing its intermediate',
      expected: 'ERR_CHAIN_UNTRUSTED',
      opensslRejects: true,
      negative: async () => {
        const svid = await cas.a.mint(id);
        return presented(svid, onlyA(), [svid.leafDer]);
      },
      control: async () => presented(await cas.a.mint(id), onlyA()),
    },
    {
      name: 'wrong root in the bundle',
      expected: 'ERR_CHAIN_UNTRUSTED',
      opensslRejects: true,
      negative: async () => {
        const impostor = await cas.a.getImpostor();
        return presented(await cas.a.mint(id), new BundleSet([X509Bundle.fromPem(TD_A, impostor.bundlePem)]));
      },
      control: async () => presented(await cas.a.mint(id), onlyA()),
    },
  );
  return cases;
}
