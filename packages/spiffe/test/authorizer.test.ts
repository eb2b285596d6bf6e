import { describe, expect, it } from 'vitest';
import {
  type Authorizer,
  authorize,
  authorizeAny,
  authorizeId,
  authorizeIf,
  authorizeMemberOf,
  authorizeOneOf,
  NotAuthorizedError,
  SpiffeId,
  TrustDomain,
} from '../src/index.js';

const A = 'spiffe://example.org/ns/default/sa/a';
const B = 'spiffe://example.org/ns/default/sa/b';
const X = 'spiffe://other.org/ns/default/sa/a';

const table: [string, Authorizer, Record<string, boolean>][] = [
  ['any', authorizeAny(), { [A]: true, [B]: true, [X]: true }],
  ['exact ID (string)', authorizeId(A), { [A]: true, [B]: false, [X]: false }],
  ['exact ID (SpiffeId)', authorizeId(SpiffeId.parse(B)), { [A]: false, [B]: true, [X]: false }],
  ['one of two', authorizeOneOf([A, SpiffeId.parse(X)]), { [A]: true, [B]: false, [X]: true }],
  ['one of an empty list: nobody', authorizeOneOf([]), { [A]: false, [B]: false, [X]: false }],
  ['member of example.org', authorizeMemberOf('example.org'), { [A]: true, [B]: true, [X]: false }],
  [
    'member of other.org',
    authorizeMemberOf(TrustDomain.parse('other.org')),
    { [A]: false, [B]: false, [X]: true },
  ],
  [
    'custom: Istio namespace default, service account a',
    authorizeIf((id) => id.istio()?.serviceAccount === 'a'),
    { [A]: true, [B]: false, [X]: true },
  ],
  [
    'custom that throws: denies',
    authorizeIf(() => {
      throw new Error('boom');
    }),
    { [A]: false, [B]: false, [X]: false },
  ],
];

describe('authorisers', () => {
  for (const [name, authorizer, expected] of table) {
    it.each(Object.entries(expected))(`${name}: %s -> %s`, (id, allowed) => {
      expect(authorizer(SpiffeId.parse(id))).toBe(allowed);
      if (allowed) expect(() => authorize(authorizer, SpiffeId.parse(id))).not.toThrow();
      else expect(() => authorize(authorizer, SpiffeId.parse(id))).toThrow(NotAuthorizedError);
    });
  }

  it('authorize() names the peer and turns a throwing plain function into NotAuthorizedError', () => {
    const err = (() => {
      try {
        authorize(() => false, SpiffeId.parse(A));
      } catch (e) {
        return e as NotAuthorizedError;
      }
    })();
    expect(err).toMatchObject({ code: 'ERR_IDENTITY_NOT_AUTHORIZED', peerId: A });
    expect(() =>
      authorize(() => {
        throw new Error('x');
      }, SpiffeId.parse(A)),
    ).toThrow(NotAuthorizedError);
  });

  it('a non-boolean truthy answer does not authorise', () => {
    const sloppy = (() => 'yes') as unknown as Authorizer;
    expect(() => authorize(sloppy, SpiffeId.parse(A))).toThrow(NotAuthorizedError);
  });

  it('factories refuse malformed IDs up front', () => {
    expect(() => authorizeId('spiffe://Example.org/x')).toThrow();
    expect(() => authorizeOneOf(['not an id'])).toThrow();
    expect(() => authorizeMemberOf('bad domain')).toThrow();
  });
});
