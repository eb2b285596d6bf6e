import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidForwardedNetworkError } from '../src/codec-errors.js';
import {
  BAGGAGE_HEADER,
  FORWARDED_HEADER,
  formatForwardedNetwork,
  HBONE_REQUEST_HEADER_ORDER,
  isSameNetwork,
  isValidNetworkName,
  parseForwardedNetwork,
  TRACEPARENT_HEADER,
  X_FORWARDED_NETWORK_HEADER,
} from '../src/forwarded-network.js';
import * as codec from './codec-properties.js';
import { oracleParseForwardedNetwork } from './oracles/forwarded-network.js';

describe('header names (ztunnel src/proxy.rs constants and create_hbone_request order)', () => {
  it('are lowercase and in ztunnel order', () => {
    expect([BAGGAGE_HEADER, FORWARDED_HEADER, TRACEPARENT_HEADER, X_FORWARDED_NETWORK_HEADER]).toEqual([
      'baggage',
      'forwarded',
      'traceparent',
      'x-forwarded-network',
    ]);
    expect(HBONE_REQUEST_HEADER_ORDER).toEqual([
      'baggage',
      'forwarded',
      'traceparent',
      'x-forwarded-network',
    ]);
    expect(Object.isFrozen(HBONE_REQUEST_HEADER_ORDER)).toBe(true);
  });
});

describe('x-forwarded-network', () => {
  it.each([
    ['network-1', 'network-1'],
    ['test-network', 'test-network'],
    ['  west\t', 'west'],
    ['Net_Work.2', 'Net_Work.2'],
    ['a'.repeat(256), 'a'.repeat(256)],
  ])('parses %j', (input, name) => {
    expect(parseForwardedNetwork(input)).toBe(name);
  });

  it.each([
    '',
    '   ',
    'a b',
    'a,b',
    'a;b',
    '"quoted"',
    'caf\u00e9',
    'a\u0000',
    'a'.repeat(257),
    'x/y',
    'x:y',
  ])('rejects %j', (input) => {
    expect(() => parseForwardedNetwork(input)).toThrow(InvalidForwardedNetworkError);
    expect(isValidNetworkName(input)).toBe(false);
  });

  it('formats the name itself, validated', () => {
    expect(formatForwardedNetwork('network-1')).toBe('network-1');
    expect(() => formatForwardedNetwork('')).toThrow(InvalidForwardedNetworkError);
    expect(() => formatForwardedNetwork(' x')).toThrow(InvalidForwardedNetworkError);
  });

  it('error has the stable code and name', () => {
    codec.expectStableCode(
      () => parseForwardedNetwork(''),
      'ERR_INVALID_FORWARDED_NETWORK',
      'InvalidForwardedNetworkError',
    );
  });

  it('compares networks ignoring ASCII case only, as ztunnel (src/proxy/inbound.rs eq_ignore_ascii_case)', () => {
    expect(isSameNetwork('Network-1', 'network-1')).toBe(true);
    expect(isSameNetwork('network-1', 'network-2')).toBe(false);
    expect(isSameNetwork('\u212a', 'k')).toBe(false); // KELVIN SIGN lowercases to k outside ASCII
  });
});

const tokenArb = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20}$/);

describe('properties', () => {
  it('round-trips: parse(format(n)) equals n', () => {
    fc.assert(
      fc.property(tokenArb, (n) => {
        expect(parseForwardedNetwork(formatForwardedNetwork(n))).toBe(n);
      }),
    );
  });

  it('agrees with the naive oracle on valid, mutated and garbage values', () => {
    const oneInsertion = codec.mutated(tokenArb, [...' \t,;"\u00e9a'], ['ins'], 1);
    codec.expectOracleAgreement(
      fc.oneof(tokenArb, oneInsertion, fc.string(), fc.string({ unit: 'binary' })),
      codec.outcomeOf(parseForwardedNetwork, InvalidForwardedNetworkError),
      oracleParseForwardedNetwork,
      { numRuns: 3000 },
    );
  });
});
