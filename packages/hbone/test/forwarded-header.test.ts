import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidForwardedError } from '../src/codec-errors.js';
import {
  type ForwardedElement,
  type ForwardedNode,
  formatForwarded,
  formatForwardedNode,
  parseForwarded,
  parseForwardedNode,
} from '../src/forwarded.js';
import * as codec from './codec-properties.js';
import { oracleParseForwarded } from './oracles/forwarded.js';

describe('formatForwarded writes what ztunnel writes (src/proxy/outbound.rs build_forwarded)', () => {
  it.each([
    // ztunnel's own unit test vectors.
    [{ for: '127.0.0.1:80' }, 'for="127.0.0.1:80"'],
    [{ for: '[::1]:80' }, 'for="[::1]:80"'],
    [{ for: '127.0.0.1:80', host: 'example.com' }, 'for="127.0.0.1:80";host=example.com'],
    // And the shapes HBONE-WIRE.md names.
    [
      { for: '[fd00::1]:80', host: 'svc.ns.svc.cluster.local' },
      'for="[fd00::1]:80";host=svc.ns.svc.cluster.local',
    ],
    [{ for: '1.2.3.4:80' }, 'for="1.2.3.4:80"'],
  ])('%j -> %s', (input, expected) => {
    expect(formatForwarded(input)).toBe(expected);
  });

  it('canonicalises IPv6 as Rust prints it, and brackets a bare IPv6 address', () => {
    expect(formatForwarded({ for: '[FD00:0:0:0::1]:80' })).toBe('for="[fd00::1]:80"');
    expect(formatForwarded({ for: 'fd00::1' })).toBe('for="[fd00::1]"');
    expect(formatForwarded({ for: '10.0.0.1' })).toBe('for="10.0.0.1"');
    expect(formatForwarded({ for: '_hidden:_port' })).toBe('for="_hidden:_port"');
    expect(formatForwarded({ for: 'unknown' })).toBe('for="unknown"');
  });

  it('quotes a host that is not a token (RFC 7239 section 4)', () => {
    expect(formatForwarded({ for: '1.2.3.4:80', host: 'example.com:8080' })).toBe(
      'for="1.2.3.4:80";host="example.com:8080"',
    );
    expect(formatForwarded({ for: '1.2.3.4:80', host: 'a"b\\c' })).toBe('for="1.2.3.4:80";host="a\\"b\\\\c"');
  });

  it.each([
    { for: '' },
    { for: 'not an ip' },
    { for: '1.2.3.4:99999' },
    { for: '010.0.0.1:80' },
    { for: '[fe80::1%eth0]:80' },
    { for: '1.2.3.4:80', host: '' },
    { for: '1.2.3.4:80', host: 'a b' },
    { for: '1.2.3.4:80', host: 'caf\u00e9' },
  ])('rejects %j', (input) => {
    expect(() => formatForwarded(input)).toThrow(InvalidForwardedError);
  });
});

describe('parseForwarded (RFC 7239)', () => {
  const el = (pairs: [string, string][]): ForwardedElement => {
    const out: Record<string, unknown> = { pairs: pairs.map(([name, value]) => ({ name, value })) };
    for (const [n, v] of pairs) if (['for', 'by', 'host', 'proto'].includes(n)) out[n] = v;
    return out as unknown as ForwardedElement;
  };

  it.each<[string, ForwardedElement[]]>([
    // RFC 7239 section 4 and 7.1 examples.
    ['for="_gazonk"', [el([['for', '_gazonk']])]],
    ['For="[2001:db8:cafe::17]:4711"', [el([['for', '[2001:db8:cafe::17]:4711']])]],
    [
      'for=192.0.2.60;proto=http;by=203.0.113.43',
      [
        el([
          ['for', '192.0.2.60'],
          ['proto', 'http'],
          ['by', '203.0.113.43'],
        ]),
      ],
    ],
    ['for=192.0.2.43, for=198.51.100.17', [el([['for', '192.0.2.43']]), el([['for', '198.51.100.17']])]],
    [
      'for=192.0.2.43,for="[2001:db8:cafe::17]",for=unknown',
      [el([['for', '192.0.2.43']]), el([['for', '[2001:db8:cafe::17]']]), el([['for', 'unknown']])],
    ],
    [
      'for=192.0.2.43, for=198.51.100.17;by=203.0.113.60;proto=http;host=example.com',
      [
        el([['for', '192.0.2.43']]),
        el([
          ['for', '198.51.100.17'],
          ['by', '203.0.113.60'],
          ['proto', 'http'],
          ['host', 'example.com'],
        ]),
      ],
    ],
    // ztunnel's writer output.
    [
      'for="10.0.0.1:80";host=svc.ns.svc.cluster.local',
      [
        el([
          ['for', '10.0.0.1:80'],
          ['host', 'svc.ns.svc.cluster.local'],
        ]),
      ],
    ],
    // ztunnel's parse_forwarded_host test vectors.
    [
      'by=identifier;for=identifier;host="example.com";proto=https',
      [
        el([
          ['by', 'identifier'],
          ['for', 'identifier'],
          ['host', 'example.com'],
          ['proto', 'https'],
        ]),
      ],
    ],
    // Tolerance: OWS, empty elements and pairs, escapes, separators inside quotes, extensions.
    [
      ' for = a ; by = b , , ;; host=c ;',
      [
        el([
          ['for', 'a'],
          ['by', 'b'],
        ]),
        el([['host', 'c']]),
      ],
    ],
    ['for="a\\"b\\\\c"', [el([['for', 'a"b\\c']])]],
    ['for="x,y;z=w"', [el([['for', 'x,y;z=w']])]],
    [
      'for=a;secret=x',
      [
        el([
          ['for', 'a'],
          ['secret', 'x'],
        ]),
      ],
    ],
    ['for=""', [el([['for', '']])]],
    ['', []],
  ])('%j', (header, expected) => {
    expect(parseForwarded(header)).toEqual(expected);
  });

  it('joins several header lines', () => {
    expect(parseForwarded(['for=a', 'for=b']).map((e) => e.for)).toEqual(['a', 'b']);
  });

  it.each([
    ['a parameter without a value', 'for='],
    ['a missing "="', 'for'],
    ['an unterminated quoted-string', 'for="abc'],
    ['a dangling escape', 'for="abc\\'],
    ['junk after a value', 'for=a b'],
    ['a bare IPv6 value (needs quoting)', 'for=[2001:db8::1]'],
    ['a repeated parameter in one element (section 4 MUST NOT)', 'for=a;For=b'],
    ['non-ASCII', 'for="caf\u00e9"'],
    ['a control character', 'for=a\u0001'],
    ['a separator where a name belongs', 'for=a;=b'],
  ])('rejects %s', (_what, header) => {
    expect(() => parseForwarded(header)).toThrow(InvalidForwardedError);
  });

  it('enforces size and element limits', () => {
    expect(parseForwarded(Array(128).fill('for=a').join(','))).toHaveLength(128);
    expect(() => parseForwarded(Array(129).fill('for=a').join(','))).toThrow(/more than 128 elements/);
    expect(() => parseForwarded('for=a,for=b', { maxElements: 1 })).toThrow(InvalidForwardedError);
    expect(() => parseForwarded(`for="${'x'.repeat(8200)}"`)).toThrow(/longer than 8192/);
  });

  it('error has the stable code and name', () => {
    codec.expectStableCode(() => parseForwarded('for='), 'ERR_INVALID_FORWARDED', 'InvalidForwardedError');
  });
});

describe('parseForwardedNode (RFC 7239 section 6)', () => {
  it.each<[string, ForwardedNode]>([
    ['192.0.2.43', { kind: 'ipv4', host: '192.0.2.43' }],
    ['192.0.2.43:80', { kind: 'ipv4', host: '192.0.2.43', port: 80 }],
    ['[2001:DB8:cafe::17]:4711', { kind: 'ipv6', host: '2001:db8:cafe::17', port: 4711 }],
    ['[2001:db8:cafe::17]', { kind: 'ipv6', host: '2001:db8:cafe::17' }],
    ['unknown', { kind: 'unknown', host: 'unknown' }],
    ['UNKNOWN:_p', { kind: 'unknown', host: 'unknown', port: '_p' }],
    ['_gazonk', { kind: 'obfuscated', host: '_gazonk' }],
    ['_SEVKISEK:_x.y-z', { kind: 'obfuscated', host: '_SEVKISEK', port: '_x.y-z' }],
    ['10.0.0.1:0', { kind: 'ipv4', host: '10.0.0.1', port: 0 }],
  ])('%s', (input, node) => {
    expect(parseForwardedNode(input)).toEqual(node);
  });

  it.each([
    '',
    '_',
    'example.com',
    '2001:db8::1',
    '[2001:db8::1',
    '[2001:db8::1]x',
    '1.2.3.4:',
    '1.2.3.4:123456',
    '1.2.3.4:-1',
    '[1.2.3.4]',
    'unknown:',
  ])('rejects %j', (input) => {
    expect(() => parseForwardedNode(input)).toThrow(InvalidForwardedError);
  });
});

// ------------------------------------------------------------------------ properties

const tokenArb = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,8}$/);
const qdArb = fc.stringMatching(/^[\t\x20-\x7e]{0,10}$/);
const quotedArb = qdArb.map((s) => `"${s.replace(/["\\]/g, (m) => `\\${m}`)}"`);
const ows = fc.constantFrom('', ' ', '\t ');
const pairArb = fc
  .tuple(
    fc.constantFrom('for', 'by', 'host', 'proto', 'For', 'HOST', 'ext'),
    ows,
    ows,
    fc.oneof(tokenArb, quotedArb),
  )
  .map(([n, a, b, v]) => `${n}${a}=${b}${v}`);
const elementArb = fc
  .uniqueArray(pairArb, { maxLength: 4, selector: (p) => p.split(/[ \t]*=/)[0]!.toLowerCase() })
  .chain((pairs) => fc.tuple(fc.constant(pairs), ows).map(([ps, o]) => ps.join(`${o};${o}`)));
const headerArb = fc
  .array(fc.tuple(elementArb, ows), { maxLength: 5 })
  .map((els) => els.map(([e, o]) => `${o}${e}${o}`).join(','));
const NASTY = [...'=,;" \t\\[]:_\u00e9\u0000a'];
const mutatedArb = codec.mutated(headerArb, NASTY, ['set', 'ins']);
const outcome = codec.outcomeOf(parseForwarded, InvalidForwardedError);

const nodeArb: fc.Arbitrary<string> = fc.oneof(
  fc
    .tuple(fc.ipV4(), fc.option(fc.integer({ min: 1, max: 65535 })))
    .map(([ip, p]) => (p === null ? ip : `${ip}:${p}`)),
  fc
    .tuple(fc.ipV6(), fc.option(fc.integer({ min: 1, max: 65535 })))
    .map(([ip, p]) => (p === null ? `[${ip}]` : `[${ip}]:${p}`)),
  fc.stringMatching(/^_[A-Za-z0-9._-]{1,8}(:_[A-Za-z0-9._-]{1,4})?$/),
);
const hostArb = fc.oneof(fc.domain(), fc.stringMatching(/^[\x21-\x7e]{1,12}$/));

describe('properties', () => {
  it('agrees with the naive oracle on valid headers', () => {
    codec.expectOracleAgreement(headerArb, outcome, oracleParseForwarded, { numRuns: 2000 });
  });

  it('agrees with the naive oracle on mutated headers', () => {
    codec.expectOracleAgreement(mutatedArb, outcome, oracleParseForwarded, { numRuns: 5000 });
  });

  it('round-trips: parse(format({for, host})) gives back the canonical node and the host', () => {
    fc.assert(
      fc.property(nodeArb, fc.option(hostArb, { nil: undefined }), (forText, host) => {
        const header = formatForwarded(host === undefined ? { for: forText } : { for: forText, host });
        const [element, ...rest] = parseForwarded(header);
        expect(rest).toEqual([]);
        expect(element!.for).toBe(formatForwardedNode(parseForwardedNode(forText)));
        expect(element!.host).toBe(host);
        expect(parseForwardedNode(element!.for!)).toEqual(parseForwardedNode(forText));
      }),
      { numRuns: 2000 },
    );
  });

  it('garbage never throws anything but InvalidForwardedError', () => {
    codec.expectOnlyThrows(
      InvalidForwardedError,
      codec.garbage(mutatedArb),
      [parseForwarded, parseForwardedNode],
      { numRuns: 3000 },
    );
  });
});
