import { describe, expect, it } from 'vitest';
import { InvalidSpiffeIdError, InvalidTrustDomainError } from '../src/errors.js';
import { SpiffeId } from '../src/spiffe-id.js';
import { SPIFFE_ID_MESSAGES as M, TrustDomain } from '../src/trust-domain.js';

// Vectors from the SPIFFE-ID standard (sections 2.1-2.3) and go-spiffe's spiffeid tests.
const valid = [
  'spiffe://example.org',
  'spiffe://example.org/workload',
  'spiffe://cluster.local/ns/default/sa/bookinfo-productpage',
  'spiffe://a-b_c.d0/x/Y/z.1-_',
  'spiffe://1.2.3.4/path',
  'spiffe://td/.../a',
  'spiffe://td/.a/..b',
];

const invalid: Array<[string, string]> = [
  ['', M.empty],
  ['example.org/path', M.wrongScheme],
  ['SPIFFE://example.org/path', M.wrongScheme],
  ['https://example.org/path', M.wrongScheme],
  ['spiffe:/example.org', M.wrongScheme],
  ['spiffe://', M.missingTrustDomain],
  ['spiffe:///path', M.missingTrustDomain],
  ['spiffe://Example.org/path', M.badTrustDomainChar],
  ['spiffe://example.org:8080/path', M.badTrustDomainChar],
  ['spiffe://user@example.org/path', M.badTrustDomainChar],
  ['spiffe://exa%41mple.org/path', M.badTrustDomainChar],
  ['spiffe://example.org/', M.trailingSlash],
  ['spiffe://example.org/a/', M.trailingSlash],
  ['spiffe://example.org//a', M.emptySegment],
  ['spiffe://example.org/a//b', M.emptySegment],
  ['spiffe://example.org/.', M.dotSegment],
  ['spiffe://example.org/a/../b', M.dotSegment],
  ['spiffe://example.org/a/./b', M.dotSegment],
  ['spiffe://example.org/a%20b', M.badPathSegmentChar],
  ['spiffe://example.org/a?x=1', M.badPathSegmentChar],
  ['spiffe://example.org/a#frag', M.badPathSegmentChar],
  ['spiffe://example.org/caf\u00e9', M.badPathSegmentChar],
  ['spiffe://example.org/a b', M.badPathSegmentChar],
  [`spiffe://example.org/${'a'.repeat(2048)}`, M.tooLong],
];

describe('SpiffeId.parse', () => {
  it.each(valid)('accepts %s and formats it back unchanged', (s) => {
    const id = SpiffeId.parse(s);
    expect(id.toString()).toBe(s);
    expect(Object.isFrozen(id)).toBe(true);
  });

  it.each(invalid)('rejects %j with the standard message', (s, message) => {
    let err: unknown;
    try {
      SpiffeId.parse(s);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InvalidSpiffeIdError);
    expect((err as InvalidSpiffeIdError).code).toBe('ERR_SPIFFE_ID_INVALID');
    expect((err as InvalidSpiffeIdError).message).toBe(message);
  });

  it('accepts an ID of exactly 2048 bytes', () => {
    const prefix = 'spiffe://example.org/';
    const s = prefix + 'a'.repeat(2048 - prefix.length);
    expect(SpiffeId.parse(s).toString().length).toBe(2048);
  });

  it('tryParse returns undefined instead of throwing', () => {
    expect(SpiffeId.tryParse('nope')).toBeUndefined();
    expect(SpiffeId.tryParse('spiffe://a/b')?.path).toBe('/b');
  });
});

describe('SpiffeId values', () => {
  it('splits trust domain, path and segments', () => {
    const id = SpiffeId.parse('spiffe://cluster.local/ns/payments/sa/cart');
    expect(id.trustDomain.name).toBe('cluster.local');
    expect(id.path).toBe('/ns/payments/sa/cart');
    expect(id.segments()).toEqual(['ns', 'payments', 'sa', 'cart']);
    expect(SpiffeId.parse('spiffe://td').segments()).toEqual([]);
  });

  it("parses Istio's ns/<ns>/sa/<sa> form and nothing else", () => {
    expect(SpiffeId.parse('spiffe://cluster.local/ns/payments/sa/cart').istio()).toEqual({
      namespace: 'payments',
      serviceAccount: 'cart',
    });
    expect(SpiffeId.parse('spiffe://td/ns/a/sa/b/extra').istio()).toBeUndefined();
    expect(SpiffeId.parse('spiffe://td/ns/a/xx/b').istio()).toBeUndefined();
    expect(SpiffeId.fromIstio('cluster.local', 'default', 'sleep').toString()).toBe(
      'spiffe://cluster.local/ns/default/sa/sleep',
    );
  });

  it('compares by value and checks membership', () => {
    const a = SpiffeId.parse('spiffe://td/a');
    expect(a.equals(SpiffeId.parse('spiffe://td/a'))).toBe(true);
    expect(a.equals(SpiffeId.parse('spiffe://td/b'))).toBe(false);
    expect(a.compare(SpiffeId.parse('spiffe://td/b'))).toBeLessThan(0);
    expect(a.memberOf(TrustDomain.parse('td'))).toBe(true);
    expect(a.memberOf(TrustDomain.parse('other'))).toBe(false);
    expect(JSON.stringify({ a })).toBe('{"a":"spiffe://td/a"}');
  });

  it('builds from segments and paths with the same rules', () => {
    expect(SpiffeId.fromSegments('td', 'a', 'b').toString()).toBe('spiffe://td/a/b');
    expect(SpiffeId.fromPath(TrustDomain.parse('td'), '').toString()).toBe('spiffe://td');
    expect(() => SpiffeId.fromSegments('td', 'a/b')).toThrow(InvalidSpiffeIdError);
    expect(() => SpiffeId.fromSegments('td', '..')).toThrow(M.dotSegment);
    expect(() => SpiffeId.fromSegments('td', '')).toThrow(M.emptySegment);
    expect(() => SpiffeId.fromPath('td', 'a')).toThrow(M.noLeadingSlash);
    expect(() => SpiffeId.fromSegments('Bad', 'a')).toThrow(InvalidTrustDomainError);
  });
});

describe('TrustDomain.parse', () => {
  it('accepts names and IDs, rejects bad characters', () => {
    expect(TrustDomain.parse('cluster.local').idString()).toBe('spiffe://cluster.local');
    expect(TrustDomain.parse('spiffe://cluster.local/ns/x').name).toBe('cluster.local');
    expect(() => TrustDomain.parse('')).toThrow(M.missingTrustDomain);
    expect(() => TrustDomain.parse('Cluster.local')).toThrow(M.badTrustDomainChar);
    expect(() => TrustDomain.parse('http://x')).toThrow(M.wrongScheme);
    expect(TrustDomain.parse('a').equals(TrustDomain.parse('a'))).toBe(true);
  });
});
