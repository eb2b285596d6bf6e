/** ztunnel's rule order and Istio's matching, L4 and L7. No sockets. */
import { SpiffeId } from '@hbone/spiffe';
import { describe, expect, it } from 'vitest';
import { cidrContains, evaluate, policiesForWorkload, stringMatches } from '../src/mesh/authorization.js';
import { type PolicyConfig, readPolicy } from '../src/mesh/config.js';

const cart = SpiffeId.parse('spiffe://east.local/ns/payments/sa/cart');
const req = { srcIdentity: cart, srcIp: '127.61.8.10', dstPort: 8080 };
const p = (o: Record<string, unknown>): PolicyConfig => readPolicy({ namespace: 'payments', ...o }, 'p');
const allowCart = p({
  name: 'allow-cart',
  rules: [{ from: [{ principals: ['east.local/ns/payments/sa/cart'] }] }],
});
const allowOther = p({ name: 'allow-other', rules: [{ from: [{ principals: ['*/sa/other'] }] }] });
const denyPort = p({ name: 'deny-8080', action: 'DENY', rules: [{ to: [{ ports: [8080] }] }] });

describe('rule order', () => {
  it('no ALLOW policy allows', () => expect(evaluate([], req).allowed).toBe(true));
  it('an ALLOW match allows', () =>
    expect(evaluate([allowOther, allowCart], req)).toMatchObject({
      allowed: true,
      policy: 'payments/allow-cart',
    }));
  it('ALLOW policies but no match denies', () =>
    expect(evaluate([allowOther], req).reason).toBe(
      'allow policies exist, but none allowed (payments/allow-other)',
    ));
  it('any DENY match denies, whatever allows', () =>
    expect(evaluate([allowCart, denyPort], req)).toMatchObject({
      allowed: false,
      reason: 'explicitly denied by: payments/deny-8080',
    }));
  it('an ALLOW without rules denies everything', () =>
    expect(evaluate([p({ name: 'empty' })], req).allowed).toBe(false));
  it('a rule {} matches everything', () =>
    expect(evaluate([p({ name: 'all', rules: [{}] })], req).allowed).toBe(true));
});

describe('matching', () => {
  it('string matches: exact, prefix*, *suffix, * (present)', () => {
    expect(stringMatches('a/b', 'a/b')).toBe(true);
    expect(stringMatches('a/*', 'a/b')).toBe(true);
    expect(stringMatches('*/b', 'a/b')).toBe(true);
    expect(stringMatches('*', undefined)).toBe(false);
  });
  it('CIDRs', () => {
    expect(cidrContains('127.61.8.0/24', '127.61.8.10')).toBe(true);
    expect(cidrContains('127.61.9.0/24', '127.61.8.10')).toBe(false);
    expect(cidrContains('0.0.0.0/0', '10.0.0.1')).toBe(true);
  });
  it('namespaces and notPrincipals; no identity never matches a principal', () => {
    const ns = p({
      name: 'ns',
      rules: [{ from: [{ namespaces: ['payments'], notPrincipals: ['*/sa/admin'] }] }],
    });
    expect(evaluate([ns], req).allowed).toBe(true);
    expect(evaluate([ns], { ...req, srcIdentity: undefined }).allowed).toBe(false);
  });
  it('L7 fields: an ALLOW rule never matches at L4; a DENY rule is enforced on its L4 part', () => {
    const l7allow = p({ name: 'get', rules: [{ to: [{ methods: ['GET'] }] }] });
    expect(evaluate([l7allow], req, 'L4').allowed).toBe(false);
    expect(evaluate([l7allow], { ...req, method: 'GET', path: '/' }, 'L7').allowed).toBe(true);
    const l7deny = p({ name: 'no-delete', action: 'DENY', rules: [{ to: [{ methods: ['DELETE'] }] }] });
    expect(evaluate([l7deny], req, 'L4').allowed).toBe(false);
    expect(evaluate([l7deny], { ...req, method: 'GET', path: '/' }, 'L7').allowed).toBe(true);
  });
  it('selectors and the root namespace pick the policies of a workload', () => {
    const w = { namespace: 'payments', labels: { app: 'checkout' } } as unknown as Parameters<
      typeof policiesForWorkload
    >[1];
    const sel = p({ name: 'sel', selector: { matchLabels: { app: 'checkout' } } });
    const other = p({ name: 'other', selector: { matchLabels: { app: 'cart' } } });
    const root = readPolicy({ name: 'mesh', namespace: 'istio-system' }, 'p');
    const svc = p({ name: 'svc', targetRef: { kind: 'Service', name: 'checkout' } });
    expect(policiesForWorkload([sel, other, root, svc], w).map((x) => x.name)).toEqual(['sel', 'mesh']);
  });
});
