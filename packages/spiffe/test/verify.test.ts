import { TestCa } from '@hbone/testkit';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BundleSet,
  CertificateExpiredError,
  CertificateNotYetValidError,
  InvalidCertificateError,
  InvalidSvidError,
  NoBundleError,
  SpiffeError,
  UntrustedChainError,
  verifyX509Svid,
  X509Bundle,
} from '../src/index.js';
import { type Cas, CLIENT_ID, makeCas, TD_A, verifierCases } from './verifier-cases.js';

let cas: Cas;
beforeAll(async () => {
  cas = await makeCas();
});

function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof SpiffeError) return err.code;
    throw err;
  }
}

describe('verifyX509Svid: each case beside its control', () => {
  // Case closures are lazy: listing names needs no CA yet.
  const names = verifierCases({} as Cas, CLIENT_ID).map((c) => c.name);
  it.each(names)('%s', async (name) => {
    const c = verifierCases(cas, CLIENT_ID).find((x) => x.name === name)!;
    const control = await c.control();
    expect(outcome(() => verifyX509Svid(control.chainDer, control.bundles))).toBe('ok');
    const negative = await c.negative();
    expect(outcome(() => verifyX509Svid(negative.chainDer, negative.bundles))).toBe(c.expected);
  });
});

describe('verifyX509Svid', () => {
  it('returns the ID and the validated path, leaf first and the authority last', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    const v = verifyX509Svid(svid.chainDer, cas.bundleA);
    expect(v.id.toString()).toBe(CLIENT_ID);
    expect(v.verifiedChain).toHaveLength(3);
    expect(Buffer.from(v.verifiedChain[0]!.der)).toEqual(Buffer.from(svid.leafDer));
    expect(v.verifiedChain[2]!.pem).toBe(cas.a.root.pem);
    expect(v.bundle).toBe(cas.bundleA);
  });

  it('accepts a chain that also carries the root, and intermediates in any order', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    const [leaf, inter] = svid.chainDer as [Uint8Array, Uint8Array];
    expect(verifyX509Svid([leaf, cas.a.root.der, inter], cas.bundleA).id.toString()).toBe(CLIENT_ID);
  });

  it('verifies at the given time: before notBefore, inside, after notAfter', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    const { notBefore, notAfter } = svid;
    const at = (t: number) => () => verifyX509Svid(svid.chainDer, cas.bundleA, { now: new Date(t) });
    expect(at(notBefore.getTime() - 1000)).toThrow(CertificateNotYetValidError);
    expect(outcome(at(notBefore.getTime() + 1000))).toBe('ok');
    expect(at(notAfter.getTime() + 1000)).toThrow(CertificateExpiredError);
  });

  it('names the certificate that expired', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    const late = new Date(Date.now() + 100 * 365 * 86_400_000);
    expect(() => verifyX509Svid(svid.chainDer, cas.bundleA, { now: late })).toThrow(
      /^leaf certificate .* expired at/,
    );
  });

  it('never merges bundles: B-claiming leaf from A is untrusted with both, and NoBundle without B', async () => {
    const svid = await cas.a.mint('spiffe://other.org/workload');
    expect(() => verifyX509Svid(svid.chainDer, new BundleSet([cas.bundleA, cas.bundleB]))).toThrow(
      UntrustedChainError,
    );
    const err = (() => {
      try {
        verifyX509Svid(svid.chainDer, cas.bundleA);
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(NoBundleError);
    expect((err as NoBundleError).trustDomain).toBe('other.org');
  });

  it('verifies RSA-2048 and P-384 leaves and CAs', async () => {
    const rsaCa = await TestCa.create(TD_A, { keyType: 'rsa-2048' });
    const bundle = X509Bundle.fromPem(TD_A, rsaCa.bundlePem);
    for (const keyType of ['rsa-2048', 'ec-p384', 'ec-p256'] as const) {
      const svid = await rsaCa.mint(CLIENT_ID, { keyType });
      expect(verifyX509Svid(svid.chainDer, bundle).id.toString()).toBe(CLIENT_ID);
    }
  });

  it('rejects an empty chain and an over-long one', async () => {
    expect(() => verifyX509Svid([], cas.bundleA)).toThrow(InvalidSvidError);
    const svid = await cas.a.mint(CLIENT_ID);
    const long = Array.from({ length: 17 }, () => svid.leafDer);
    expect(() => verifyX509Svid(long, cas.bundleA)).toThrow(InvalidSvidError);
  });

  it('turns garbage bytes (leaf or intermediate) into InvalidCertificateError, never a crash', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 2048 }), (bytes) => {
        expect(() => verifyX509Svid([bytes], cas.bundleA)).toThrow(SpiffeError);
        expect(() => verifyX509Svid([svid.leafDer, bytes], cas.bundleA)).toThrow(SpiffeError);
      }),
      { numRuns: 200 },
    );
  });

  it('turns truncated and bit-flipped certificates into typed errors', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    const der = svid.leafDer;
    fc.assert(
      fc.property(fc.nat(der.length - 1), fc.nat(7), (at, bit) => {
        const flipped = new Uint8Array(der);
        flipped[at]! ^= 1 << bit;
        for (const input of [der.subarray(0, at), flipped]) {
          // outcome() rethrows anything that is not a SpiffeError: reaching the assertion means
          // a typed error (or, for a flip in an unsigned field, a still-valid certificate).
          const r = outcome(() => verifyX509Svid([input, ...svid.chainDer.slice(1)], cas.bundleA));
          expect(typeof r).toBe('string');
        }
      }),
      { numRuns: 300 },
    );
    expect(() => verifyX509Svid([der.subarray(0, 10)], cas.bundleA)).toThrow(InvalidCertificateError);
  });

  it('a flipped bit in the signed part never verifies', async () => {
    const svid = await cas.a.mint(CLIENT_ID);
    const der = svid.leafDer;
    // The TBS certificate runs from byte 4 to before the signature algorithm; flip inside it.
    fc.assert(
      fc.property(fc.integer({ min: 8, max: 200 }), fc.nat(7), (at, bit) => {
        const flipped = new Uint8Array(der);
        flipped[at]! ^= 1 << bit;
        expect(outcome(() => verifyX509Svid([flipped, ...svid.chainDer.slice(1)], cas.bundleA))).not.toBe(
          'ok',
        );
      }),
      { numRuns: 200 },
    );
  });

  it('the trust domain bundle lookup uses the leaf trust domain, not the order of bundles', async () => {
    const svidB = await cas.b.mint('spiffe://other.org/x');
    const set = new BundleSet([cas.bundleB, cas.bundleA]);
    expect(verifyX509Svid(svidB.chainDer, set).id.trustDomain.name).toBe('other.org');
    expect(() => verifyX509Svid(svidB.chainDer, X509Bundle.fromPem(TD_A, cas.b.bundlePem))).toThrow(
      NoBundleError,
    );
  });

  it('any mix of real certificates verifies only along a real path to the leaf trust domain (property)', async () => {
    const [good, b, wrong] = await Promise.all([
      cas.a.mint(CLIENT_ID),
      cas.b.mint('spiffe://other.org/ns/default/sa/client'),
      cas.a.mint(CLIENT_ID, { defects: ['wrong-ca'] }),
    ]);
    const pieces = [
      ...good.chainDer,
      cas.a.root.der,
      ...b.chainDer,
      cas.b.root.der,
      ...wrong.chainDer,
      cas.c.root.der,
    ];
    const bundles = new BundleSet([cas.bundleA, cas.bundleB]);
    fc.assert(
      fc.property(fc.array(fc.nat(pieces.length - 1), { minLength: 1, maxLength: 8 }), (idx) => {
        const chain = idx.map((i) => pieces[i]!);
        let verified: ReturnType<typeof verifyX509Svid> | undefined;
        try {
          verified = verifyX509Svid(chain, bundles);
        } catch (err) {
          expect(err).toBeInstanceOf(SpiffeError);
          return;
        }
        // Success: the leaf is what was sent first, each link is signed by the next, the last
        // is an authority of the bundle of the leaf's own trust domain.
        const path = verified.verifiedChain;
        expect(Buffer.from(path[0]!.der)).toEqual(Buffer.from(chain[0]!));
        for (let i = 0; i + 1 < path.length; i++) expect(path[i]!.isSignedBy(path[i + 1]!)).toBe(true);
        expect(verified.bundle.trustDomain.equals(verified.id.trustDomain)).toBe(true);
        expect(verified.bundle.hasAuthority(path.at(-1)!)).toBe(true);
        expect([Buffer.from(good.leafDer), Buffer.from(b.leafDer)]).toContainEqual(Buffer.from(chain[0]!));
      }),
      { numRuns: 300 },
    );
  });
});
