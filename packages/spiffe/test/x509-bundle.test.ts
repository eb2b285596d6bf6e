import { TestCa } from '@hbone/testkit';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  BundleSet,
  InvalidBundleError,
  MAX_SEQUENCE,
  SpiffeError,
  TrustDomain,
  X509Bundle,
} from '../src/index.js';

const TD = 'example.org';
let roots: Uint8Array[] = [];
let rootPems: string[] = [];

beforeAll(async () => {
  const cas = await Promise.all([
    TestCa.create(TD),
    TestCa.create(TD, { keyType: 'ec-p384' }),
    TestCa.create(TD, { keyType: 'rsa-2048' }),
  ]);
  roots = cas.map((c) => c.root.der);
  rootPems = cas.map((c) => c.root.pem);
});

const b64 = (der: Uint8Array) => Buffer.from(der).toString('base64');

/** A valid JWK for the root at `i`, as `toJwks` writes it. */
function jwkOf(i: number): Record<string, unknown> {
  const doc = JSON.parse(X509Bundle.fromAuthorities(TD, [roots[i]!]).toJwks()) as {
    keys: Record<string, unknown>[];
  };
  return doc.keys[0]!;
}

function parseError(json: string): string {
  try {
    X509Bundle.fromJwks(TD, json);
    return 'ok';
  } catch (err) {
    if (err instanceof InvalidBundleError) return err.message;
    throw err;
  }
}

describe('X509Bundle: SPIFFE bundle JSON', () => {
  it('round-trips authorities, sequence and refresh hint', () => {
    const bundle = X509Bundle.fromAuthorities(TD, roots, { sequence: 42n, refreshHintSeconds: 300 });
    const json = bundle.toJwks();
    const back = X509Bundle.fromJwks(TD, json);
    expect(back.equals(bundle)).toBe(true);
    expect(back.sequence).toBe(42n);
    expect(back.refreshHintSeconds).toBe(300);
    expect(back.trustDomain.equals(TrustDomain.parse(TD))).toBe(true);
    expect(back.toJwks()).toBe(json);
  });

  it('writes the standard form: use x509-svid, kty and key members, one x5c, no kid', () => {
    const doc = JSON.parse(X509Bundle.fromAuthorities(TD, roots, { sequence: 1 }).toJwks()) as {
      keys: Record<string, unknown>[];
      spiffe_sequence: number;
    };
    expect(Object.keys(doc)).toEqual(['keys', 'spiffe_sequence']);
    expect(doc.keys.map((k) => [k.kty, k.crv ?? null])).toEqual([
      ['EC', 'P-256'],
      ['EC', 'P-384'],
      ['RSA', null],
    ]);
    for (const [i, k] of doc.keys.entries()) {
      expect(k).toMatchObject({ use: 'x509-svid', x5c: [b64(roots[i]!)] });
      expect(k).not.toHaveProperty('kid');
    }
    expect(doc.keys[2]).toMatchObject({ e: 'AQAB', n: expect.any(String) });
  });

  it('keeps the sequence as a 64-bit value: 2^64-1 is accepted, 2^64 rejected', () => {
    const max = X509Bundle.fromJwks(TD, `{"keys":[],"spiffe_sequence":18446744073709551615}`);
    expect(max.sequence).toBe(MAX_SEQUENCE);
    expect(max.sequence).toBe(2n ** 64n - 1n);
    expect(max.toJwks()).toBe('{"keys":[],"spiffe_sequence":18446744073709551615}');
    // 2^53 + 1 would be rounded by JSON.parse; it is not here.
    expect(X509Bundle.fromJwks(TD, '{"keys":[],"spiffe_sequence":9007199254740993}').sequence).toBe(
      9007199254740993n,
    );
    for (const bad of ['18446744073709551616', '-1', '1.5', '1e3', '"7"', 'null', '01']) {
      expect(() => X509Bundle.fromJwks(TD, `{"keys":[],"spiffe_sequence":${bad}}`)).toThrow(
        InvalidBundleError,
      );
    }
    expect(() => X509Bundle.fromAuthorities(TD, [], { sequence: 2n ** 64n })).toThrow(InvalidBundleError);
    expect(() => X509Bundle.fromAuthorities(TD, [], { sequence: -1 })).toThrow(InvalidBundleError);
  });

  it('reads the refresh hint as whole seconds', () => {
    expect(X509Bundle.fromJwks(TD, '{"keys":[],"spiffe_refresh_hint":2419200}').refreshHintSeconds).toBe(
      2419200,
    );
    for (const bad of ['-5', '1.5', '"60"', '1e2']) {
      expect(() => X509Bundle.fromJwks(TD, `{"keys":[],"spiffe_refresh_hint":${bad}}`)).toThrow(
        InvalidBundleError,
      );
    }
  });

  it('ignores keys of other uses and unknown key types, as the standard requires', () => {
    const jwt = { kty: 'EC', use: 'jwt-svid', kid: 'k1', crv: 'P-256', x: 'AA', y: 'AA' };
    const unknownKty = { ...jwkOf(0), kty: 'PQC' };
    const bundle = X509Bundle.fromJwks(TD, JSON.stringify({ keys: [jwt, jwkOf(1), unknownKty] }));
    expect(bundle.authorities.map((a) => a.pem)).toEqual([rootPems[1]]);
  });

  it.each([
    ['not JSON', 'hello', /unable to parse JWKS/],
    ['truncated JSON', '{"keys":[', /unable to parse JWKS/],
    ['trailing data', '{"keys":[]} x', /unable to parse JWKS/],
    ['duplicate member', '{"keys":[],"keys":[]}', /duplicate member/],
    ['an array', '[]', /JSON object/],
    ['no keys', '{}', /no keys found/],
    ['keys not an array', '{"keys":{}}', /keys must be an array/],
    ['a key that is not an object', '{"keys":[1]}', /key 0 is not a JSON object/],
    ['a key without use', '{"keys":[{"kty":"EC"}]}', /key 0 has no "use"/],
    ['a key whose use is not a string', '{"keys":[{"kty":"EC","use":42}]}', /key 0 has no "use"/],
    ['an x509-svid key without kty', '{"keys":[{"use":"x509-svid"}]}', /no "kty"/],
  ])('rejects %s', (_name, json, message) => {
    expect(parseError(json)).toMatch(message);
  });

  it('rejects an x509-svid key with no, empty, two, or bad x5c, or a key that does not match it', () => {
    const k = jwkOf(0);
    const doc = (key: Record<string, unknown>) => JSON.stringify({ keys: [key] });
    const { x5c: _x5c, ...noX5c } = k;
    expect(parseError(doc(noX5c))).toMatch(/expected a single certificate in x509-svid entry 0; got 0/);
    expect(parseError(doc({ ...k, x5c: [] }))).toMatch(/got 0/);
    expect(parseError(doc({ ...k, x5c: [b64(roots[0]!), b64(roots[1]!)] }))).toMatch(/got 2/);
    expect(parseError(doc({ ...k, x5c: ['***'] }))).toMatch(/base64/);
    expect(parseError(doc({ ...k, x5c: [Buffer.from('garbage').toString('base64')] }))).toMatch(
      /does not parse/,
    );
    expect(parseError(doc({ ...k, x: jwkOf(0).y }))).toMatch(/does not match/);
    expect(parseError(doc({ ...jwkOf(1), x5c: [b64(roots[0]!)] }))).toMatch(/does not match/);
  });

  it('round-trips any subset of authorities with any sequence and hint (property)', () => {
    fc.assert(
      fc.property(
        fc.subarray([0, 1, 2]),
        fc.option(fc.bigInt({ min: 0n, max: MAX_SEQUENCE }), { nil: undefined }),
        fc.option(fc.nat(), { nil: undefined }),
        fc.option(fc.integer({ min: 0, max: 4 }), { nil: undefined }),
        (idx, sequence, refreshHintSeconds, indent) => {
          const bundle = X509Bundle.fromAuthorities(
            TD,
            idx.map((i) => roots[i]!),
            { sequence, refreshHintSeconds },
          );
          const back = X509Bundle.fromJwks(TD, bundle.toJwks({ indent }));
          expect(back.equals(bundle)).toBe(true);
          expect(back.sequence).toBe(sequence);
          if (idx.length > 0)
            expect(X509Bundle.fromPem(TD, bundle.toPem()).authorities).toHaveLength(idx.length);
        },
      ),
      { numRuns: 200 },
    );
  });

  it('never throws anything but InvalidBundleError on garbage, and never hangs (property)', () => {
    const start = Date.now();
    const valid = X509Bundle.fromAuthorities(TD, roots, { sequence: 7n }).toJwks();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 300 }),
          fc.json(),
          fc.uint8Array({ maxLength: 300 }),
          fc.nat(valid.length).map((n) => valid.slice(0, n)),
          fc
            .tuple(fc.nat(valid.length - 1), fc.string({ minLength: 1, maxLength: 3 }))
            .map(([at, s]) => valid.slice(0, at) + s + valid.slice(at + 1)),
          fc.nat(200).map((n) => '['.repeat(n * 50)),
        ),
        (input) => {
          try {
            X509Bundle.fromJwks(TD, input);
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidBundleError);
          }
          try {
            X509Bundle.parse(TD, input);
          } catch (err) {
            expect(err).toBeInstanceOf(SpiffeError);
          }
        },
      ),
      { numRuns: 500 },
    );
    expect(Date.now() - start).toBeLessThan(20_000);
  });
});

describe('X509Bundle: PEM', () => {
  it('reads every certificate block and writes them back', () => {
    const bundle = X509Bundle.fromPem(TD, `comment\n${rootPems.join('\n')}`);
    expect(bundle.authorities).toHaveLength(3);
    expect(bundle.toPem()).toBe(rootPems.join(''));
    expect(X509Bundle.parse(TD, bundle.toPem()).equals(bundle)).toBe(true);
  });

  it('drops duplicate authorities', () => {
    expect(X509Bundle.fromPem(TD, rootPems[0]! + rootPems[0]!).authorities).toHaveLength(1);
  });

  it('rejects text without certificates and certificates that do not parse', () => {
    expect(() => X509Bundle.fromPem(TD, 'nothing here')).toThrow(InvalidBundleError);
    expect(() =>
      X509Bundle.fromPem(TD, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n'),
    ).toThrow(InvalidBundleError);
  });
});

describe('BundleSet', () => {
  it('maps trust domains to bundles and bumps its generation on change', () => {
    const a = X509Bundle.fromAuthorities(TD, [roots[0]!]);
    const b = X509Bundle.fromAuthorities('other.org', [roots[1]!]);
    const set = new BundleSet([a]);
    const seen: number[] = [];
    const stop = set.onChange(() => seen.push(set.generation));
    set.set(b);
    set.set(b);
    expect(set.getX509BundleForTrustDomain(TrustDomain.parse('other.org'))).toBe(b);
    expect(set.getX509Bundles()).toEqual([a, b]);
    expect(set.delete('other.org')).toBe(true);
    expect(set.delete('other.org')).toBe(false);
    stop();
    set.clear();
    expect(seen).toEqual([1, 2]);
    expect(set.generation).toBe(3);
    expect(set.size).toBe(0);
  });

  it('refuses two bundles for one trust domain', () => {
    const a = X509Bundle.fromAuthorities(TD, [roots[0]!]);
    expect(() => new BundleSet([a, a.with({ sequence: 2 })])).toThrow(InvalidBundleError);
  });
});
