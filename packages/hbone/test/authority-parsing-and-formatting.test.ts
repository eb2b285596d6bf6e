import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  type Authority,
  canonicalizeIp,
  formatAuthority,
  isValidHostname,
  parseAuthority,
} from '../src/authority.js';
import { InvalidAuthorityError } from '../src/codec-errors.js';
import * as codec from './codec-properties.js';
import { oracleParseAuthority } from './oracles/authority.js';

function reasonOf(s: string): string {
  try {
    parseAuthority(s);
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidAuthorityError);
    return (err as InvalidAuthorityError).reason;
  }
  throw new Error(`accepted ${JSON.stringify(s)}`);
}

describe('parseAuthority accepts what ztunnel sends', () => {
  it.each<[string, Authority]>([
    ['10.0.0.2:8080', { kind: 'ipv4', host: '10.0.0.2', port: 8080 }],
    ['[fd00::2]:8080', { kind: 'ipv6', host: 'fd00::2', port: 8080 }],
    ['[::ffff:10.0.0.1]:80', { kind: 'ipv6', host: '::ffff:10.0.0.1', port: 80 }],
    [
      'reviews.default.svc.cluster.local:9080',
      { kind: 'hostname', host: 'reviews.default.svc.cluster.local', port: 9080 },
    ],
    ['localhost:1', { kind: 'hostname', host: 'localhost', port: 1 }],
    ['0.0.0.0:65535', { kind: 'ipv4', host: '0.0.0.0', port: 65535 }],
    ['255.255.255.255:15008', { kind: 'ipv4', host: '255.255.255.255', port: 15008 }],
  ])('%s', (input, expected) => {
    expect(parseAuthority(input)).toEqual(expected);
    expect(formatAuthority(parseAuthority(input))).toBe(input);
  });

  it('returns a frozen value', () => {
    expect(Object.isFrozen(parseAuthority('10.0.0.2:80'))).toBe(true);
  });
});

describe('IPv6 canonical form is what Rust SocketAddr Display prints', () => {
  // Left: input; right: Rust 1.95 `"<input>".parse::<SocketAddr>()` then `to_string()`, the path
  // ztunnel takes (src/proxy.rs HboneAddress, src/proxy/outbound.rs create_hbone_request).
  it.each([
    ['[FD00:0:0:0:0:0:0:2]:8080', '[fd00::2]:8080'],
    ['[0:0:0:0:0:FFFF:0A00:0001]:80', '[::ffff:10.0.0.1]:80'],
    ['[::ffff:a00:1]:80', '[::ffff:10.0.0.1]:80'],
    ['[::ffff:0:0]:1', '[::ffff:0.0.0.0]:1'],
    ['[::1.2.3.4]:80', '[::102:304]:80'],
    ['[64:ff9b::1.2.3.4]:1', '[64:ff9b::102:304]:1'],
    ['[1:2:3:4:5:6:1.2.3.4]:1', '[1:2:3:4:5:6:102:304]:1'],
    ['[1:0:0:1:0:0:0:1]:1', '[1:0:0:1::1]:1'],
    ['[1:0:0:2:0:0:3:4]:1', '[1::2:0:0:3:4]:1'],
    ['[0:0:1:0:0:1:0:0]:1', '[::1:0:0:1:0:0]:1'],
    ['[1:2:3:4:5:6::8]:1', '[1:2:3:4:5:6:0:8]:1'],
    ['[1::2:3:4:5:6:7]:1', '[1:0:2:3:4:5:6:7]:1'],
    ['[0001:0db8::0001]:1', '[1:db8::1]:1'],
    ['[::0.0.0.0]:1', '[::]:1'],
    ['[0:0:0:0:0:0:0:1]:15008', '[::1]:15008'],
    ['[2001:DB8:0:0:1:0:0:1]:443', '[2001:db8::1:0:0:1]:443'],
    ['[0:0000:0000:9c05:C9F6:aaf1:0:DC15]:37891', '[::9c05:c9f6:aaf1:0:dc15]:37891'],
    ['[a5e8:7925:0:0:0:5947::0]:33780', '[a5e8:7925::5947:0:0]:33780'],
    ['[0:147c:0:fd41:0:0::]:11207', '[0:147c:0:fd41::]:11207'],
    ['[f05f:77b1:0::0:0:4d5b:8A6D]:23048', '[f05f:77b1::4d5b:8a6d]:23048'],
    ['[0:3f1d:0:0:d730:746:6897:0000]:28598', '[0:3f1d::d730:746:6897:0]:28598'],
    ['[0:750a:0:0:20f2::0000:4ba6]:149', '[0:750a::20f2:0:0:4ba6]:149'],
    ['[e405:E9E9:e27b:0:0:0000:0:8f4b]:27892', '[e405:e9e9:e27b::8f4b]:27892'],
  ])('%s -> %s', (input, rust) => {
    expect(formatAuthority(parseAuthority(input))).toBe(rust);
  });

  it('formatAuthority canonicalises a hand-written IPv6 host', () => {
    expect(formatAuthority({ kind: 'ipv6', host: 'FD00:0:0::2', port: 80 })).toBe('[fd00::2]:80');
  });
});

describe('parseAuthority rejects, with a reason', () => {
  it.each([
    ['', 'empty'],
    ['10.0.0.2', 'missing port'],
    ['10.0.0.2:', 'port must be decimal 1..65535'],
    ['10.0.0.2:0', 'port must be decimal 1..65535'],
    ['10.0.0.2:080', 'port must be decimal 1..65535'],
    ['10.0.0.2:+80', 'port must be decimal 1..65535'],
    ['10.0.0.2:65536', 'port must be decimal 1..65535'],
    ['10.0.0.2:8080 ', 'port must be decimal 1..65535'],
    ['010.0.0.2:80', 'invalid IPv4 address'],
    ['10.0.0.256:80', 'invalid IPv4 address'],
    ['1.2.3:80', 'invalid IPv4 address'],
    ['1.2.3.4.5:80', 'invalid IPv4 address'],
    ['fd00::2:8080', 'IPv6 address must be in brackets'],
    ['[fd00::2]', 'missing port'],
    ['[fd00::2]8080', 'missing port'],
    ['[fd00::2:8080', 'unterminated IPv6 bracket'],
    ['[fe80::1%eth0]:80', 'IPv6 zone IDs are not allowed'],
    ['[fe80::1%2]:80', 'IPv6 zone IDs are not allowed'],
    ['[1:2:3:4:5:6:7::8]:1', 'invalid IPv6 address'],
    ['[1::2::3]:1', 'invalid IPv6 address'],
    ['[12345::1]:1', 'invalid IPv6 address'],
    ['[::01.2.3.4]:1', 'invalid IPv6 address'],
    ['[10.0.0.1]:80', 'invalid IPv6 address'],
    ['user@10.0.0.2:80', 'userinfo is not allowed'],
    [':80', 'empty host'],
    ['-bad.example:80', 'invalid hostname (RFC 1123)'],
    ['bad-.example:80', 'invalid hostname (RFC 1123)'],
    ['under_score.example:80', 'invalid hostname (RFC 1123)'],
    ['trailing.dot.:80', 'invalid hostname (RFC 1123)'],
    ['a..b:80', 'invalid hostname (RFC 1123)'],
    ['example.123:80', 'invalid hostname (RFC 1123)'],
    [`${'a'.repeat(64)}.example:80`, 'invalid hostname (RFC 1123)'],
    [`${'a.'.repeat(127)}ab:80`, 'invalid hostname (RFC 1123)'],
    [`${'a'.repeat(300)}:80`, 'too long'],
  ])('%j (%s)', (input, reason) => {
    expect(reasonOf(input)).toBe(reason);
  });

  it('carries code ERR_INVALID_AUTHORITY and the class name', () => {
    const err = codec.expectStableCode<InvalidAuthorityError>(
      () => parseAuthority('nope'),
      'ERR_INVALID_AUTHORITY',
      'InvalidAuthorityError',
    );
    expect(err).toBeInstanceOf(Error);
    expect(err.input).toBe('nope');
  });
});

describe('formatAuthority validates its input', () => {
  it.each<Authority>([
    { kind: 'ipv4', host: '10.0.0.1', port: 0 },
    { kind: 'ipv4', host: '10.0.0.1', port: 1.5 },
    { kind: 'ipv4', host: '10.0.0.1', port: 65536 },
    { kind: 'ipv4', host: 'fd00::1', port: 80 },
    { kind: 'ipv6', host: '[fd00::1]', port: 80 },
    { kind: 'ipv6', host: 'fe80::1%eth0', port: 80 },
    { kind: 'hostname', host: '10.0.0.1', port: 80 },
    { kind: 'hostname', host: 'a_b', port: 80 },
    { kind: 'other' as 'ipv4', host: 'a', port: 80 },
  ])('%j', (a) => {
    expect(() => formatAuthority(a)).toThrow(InvalidAuthorityError);
  });
});

describe('helpers', () => {
  it('canonicalizeIp', () => {
    expect(canonicalizeIp('10.0.0.1')).toEqual({ kind: 'ipv4', host: '10.0.0.1' });
    expect(canonicalizeIp('FD00::0:2')).toEqual({ kind: 'ipv6', host: 'fd00::2' });
    expect(canonicalizeIp('1.2.3.04')).toBeUndefined();
    expect(canonicalizeIp('host')).toBeUndefined();
  });
  it('isValidHostname', () => {
    expect(isValidHostname('a')).toBe(true);
    expect(isValidHostname('x-1.y')).toBe(true);
    expect(isValidHostname(`${'a'.repeat(63)}.b`)).toBe(true);
    expect(isValidHostname('')).toBe(false);
  });
});

// ------------------------------------------------------------------------ properties

const hostname = fc.domain({ size: 'small' });
const validAuthorityString = fc.oneof(
  fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
  fc.tuple(fc.ipV6(), fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `[${h}]:${p}`),
  fc.tuple(hostname, fc.integer({ min: 1, max: 65535 })).map(([h, p]) => `${h}:${p}`),
);
const NASTY = [...'[]:.%@0123456789abcdefABCDEF-_ \t/\u00e9\u0000'];
const mutatedAuthority = codec.mutated(validAuthorityString, NASTY);
const outcome = codec.outcomeOf(parseAuthority, InvalidAuthorityError);

describe('properties', () => {
  it('agrees with the naive oracle on valid inputs', () => {
    codec.expectOracleAgreement(validAuthorityString, outcome, oracleParseAuthority, { numRuns: 2000 });
  });

  it('agrees with the naive oracle on mutated inputs', () => {
    codec.expectOracleAgreement(mutatedAuthority, outcome, oracleParseAuthority, { numRuns: 5000 });
  });

  it('round-trips: parse(format(a)) equals a, and format is idempotent', () => {
    fc.assert(
      fc.property(validAuthorityString, (s) => {
        const a = parseAuthority(s);
        const text = formatAuthority(a);
        expect(parseAuthority(text)).toEqual(a);
        expect(formatAuthority(parseAuthority(text))).toBe(text);
      }),
      { numRuns: 2000 },
    );
  });

  it('garbage never throws anything but InvalidAuthorityError', () => {
    codec.expectOnlyThrows(InvalidAuthorityError, codec.garbage(mutatedAuthority), [parseAuthority], {
      numRuns: 3000,
    });
  });
});
