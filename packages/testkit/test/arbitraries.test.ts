import * as fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  arbInvalidSpiffeIdString,
  arbIstioSpiffeIdString,
  arbSpiffeIdString,
  arbTrustDomainName,
  INVALID_ID_MESSAGES,
  INVALID_ID_REASONS,
  type InvalidIdReason,
  MAX_SPIFFE_ID_LENGTH,
} from '../src/index.js';

// Naive oracles written straight from SPIFFE-ID section 2, independent of the generators.
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const VALID_ID = /^spiffe:\/\/[a-z0-9._-]+(\/[a-zA-Z0-9._-]+)*$/;
const ISTIO_ID =
  /^spiffe:\/\/[a-z0-9._-]+\/ns\/[a-z0-9]([-a-z0-9]*[a-z0-9])?\/sa\/[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function isValidId(s: string): boolean {
  return (
    VALID_ID.test(s) &&
    Buffer.byteLength(s) <= MAX_SPIFFE_ID_LENGTH &&
    s
      .slice('spiffe://'.length)
      .split('/')
      .slice(1)
      .every((seg) => seg !== '.' && seg !== '..')
  );
}

/**
 * A reference classifier in the order a left-to-right parser meets problems (go-spiffe's order):
 * emptiness, scheme, trust domain characters, missing trust domain, then path segments, where an
 * empty or dot segment is noticed at the next '/' (or the end) and a bad character where it is.
 */
function classify(s: string): InvalidIdReason | 'valid' {
  if (s === '') return 'empty';
  if (!s.startsWith('spiffe://')) return 'wrong-scheme';
  const rest = s.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  const td = slash < 0 ? rest : rest.slice(0, slash);
  for (const c of td) if (!/[a-z0-9._-]/.test(c)) return 'bad-trust-domain-char';
  if (td === '') return 'missing-trust-domain';
  if (slash < 0) return 'valid';
  const path = rest.slice(slash);
  let segment = '';
  for (let i = 1; i <= path.length; i++) {
    const c = path[i];
    if (c === '/' || c === undefined) {
      if (segment === '') return c === undefined ? 'trailing-slash' : 'empty-segment';
      if (segment === '.' || segment === '..') return 'dot-segment';
      segment = '';
    } else if (!/[a-zA-Z0-9._-]/.test(c)) {
      return 'bad-path-segment-char';
    } else {
      segment += c;
    }
  }
  return 'valid';
}

describe('valid arbitraries', () => {
  it('arbTrustDomainName yields names of allowed characters, 1..63 long by default', () => {
    fc.assert(
      fc.property(arbTrustDomainName(), (td) => {
        expect(td).toMatch(TRUST_DOMAIN);
        expect(td.length).toBeLessThanOrEqual(63);
      }),
      { numRuns: 500 },
    );
    fc.assert(fc.property(arbTrustDomainName({ maxLength: 255 }), (td) => td.length <= 255));
  });

  it('arbSpiffeIdString yields IDs the naive oracle and the reference classifier accept', () => {
    fc.assert(
      fc.property(arbSpiffeIdString(), (id) => {
        expect(isValidId(id), id).toBe(true);
        expect(classify(id)).toBe('valid');
      }),
      { numRuns: 1000 },
    );
  });

  it("reaches the 2048-byte limit and, with path: 'required', always has a path", () => {
    const ids = fc.sample(arbSpiffeIdString({ path: 'required', trustDomain: 'example.org' }), 500);
    for (const id of ids) {
      expect(isValidId(id), id).toBe(true);
      expect(id.startsWith('spiffe://example.org/')).toBe(true);
    }
    expect(ids.some((id) => id.length >= 2000)).toBe(true);
    expect(fc.sample(arbSpiffeIdString(), 500).some((id) => !id.slice(9).includes('/'))).toBe(true);
  });

  it('arbIstioSpiffeIdString yields spiffe://<td>/ns/<ns>/sa/<sa>', () => {
    fc.assert(
      fc.property(arbIstioSpiffeIdString(), (id) => {
        expect(id).toMatch(ISTIO_ID);
        expect(isValidId(id)).toBe(true);
      }),
      { numRuns: 500 },
    );
    expect(
      fc
        .sample(arbIstioSpiffeIdString({ trustDomain: 'cluster.local' }), 20)
        .every((id) => id.startsWith('spiffe://cluster.local/ns/')),
    ).toBe(true);
  });
});

describe('arbInvalidSpiffeIdString', () => {
  it('labels each input with the rule a left-to-right parser meets first', () => {
    fc.assert(
      fc.property(arbInvalidSpiffeIdString(), ({ input, reason }) => {
        expect(classify(input), JSON.stringify(input)).toBe(reason);
        expect(isValidId(input)).toBe(false);
      }),
      { numRuns: 1000 },
    );
  });

  it('draws every reason, or only the ones asked for', () => {
    const seen = new Set(fc.sample(arbInvalidSpiffeIdString(), 1000).map((x) => x.reason));
    expect([...seen].sort()).toEqual([...INVALID_ID_REASONS].sort());
    const only = fc.sample(arbInvalidSpiffeIdString({ reasons: ['dot-segment', 'trailing-slash'] }), 200);
    expect(new Set(only.map((x) => x.reason))).toEqual(new Set(['dot-segment', 'trailing-slash']));
    expect(() => arbInvalidSpiffeIdString({ reasons: [] })).toThrow(RangeError);
  });

  it('covers the exclusions the standard names: port, userinfo, percent-encoding, query, fragment, uppercase', () => {
    const inputs = fc
      .sample(arbInvalidSpiffeIdString({ reasons: ['bad-trust-domain-char', 'bad-path-segment-char'] }), 3000)
      .map((x) => x.input);
    for (const needle of [':8443', 'user@', '%41', '?', '#', 'A']) {
      expect(
        inputs.some((s) => s.includes(needle)),
        needle,
      ).toBe(true);
    }
  });
});

describe('INVALID_ID_MESSAGES', () => {
  it("has go-spiffe's wording for every reason", () => {
    expect(Object.keys(INVALID_ID_MESSAGES).sort()).toEqual([...INVALID_ID_REASONS].sort());
    expect(INVALID_ID_MESSAGES).toEqual({
      empty: 'cannot be empty',
      'wrong-scheme': 'scheme is missing or invalid',
      'missing-trust-domain': 'trust domain is missing',
      'bad-trust-domain-char':
        'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
      'bad-path-segment-char':
        'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
      'empty-segment': 'path cannot contain empty segments',
      'dot-segment': 'path cannot contain dot segments',
      'trailing-slash': 'path cannot have a trailing slash',
    });
  });
});
