import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type ClientHelloInfo, parseClientHello } from '../src/client-hello.js';
import { InvalidClientHelloError } from '../src/codec-errors.js';
import * as codec from './codec-properties.js';
import {
  alpnExtension,
  buildClientHello,
  buildHandshake,
  buildRecords,
  type HelloSpec,
  oracleParseClientHello,
  sniExtension,
  versionsExtension,
} from './oracles/client-hello.js';

const TLS13_AES_128 = 0x1301;
const TLS13_AES_256 = 0x1302;

function hbone(overrides: Partial<HelloSpec> = {}): HelloSpec {
  return {
    legacyVersion: 0x0303,
    random: new Uint8Array(32).fill(7),
    sessionId: new Uint8Array(32).fill(9),
    cipherSuites: [TLS13_AES_256, TLS13_AES_128],
    compression: Uint8Array.of(0),
    extensions: [
      alpnExtension(['h2']),
      versionsExtension([0x0304]),
      { type: 0x000a, data: Uint8Array.of(0, 2, 0, 0x1d) }, // supported_groups: x25519
    ],
    ...overrides,
  };
}

function reasonOf(buf: Uint8Array): string {
  try {
    const r = parseClientHello(buf);
    throw new Error(`accepted: ${JSON.stringify(r)}`);
  } catch (err) {
    if (!(err instanceof InvalidClientHelloError)) throw err;
    return err.reason;
  }
}

describe('parseClientHello reads what HBONE clients send', () => {
  it('an ztunnel-like hello: no SNI, ALPN h2, TLS 1.3 only', () => {
    const bytes = buildClientHello(hbone());
    expect(parseClientHello(bytes)).toEqual({
      alpn: ['h2'],
      supportedVersions: [0x0304],
      legacyVersion: 0x0303,
      cipherSuites: [TLS13_AES_256, TLS13_AES_128],
      bytesConsumed: bytes.length,
    });
    expect('sni' in (parseClientHello(bytes) as ClientHelloInfo)).toBe(false);
  });

  it('SNI naming a SPIFFE identity (the east-west gateway policy)', () => {
    const sni = 'spiffe://cluster.local/ns/default/sa/reviews';
    const spec = hbone({ extensions: [sniExtension(sni), alpnExtension(['h2', 'http/1.1'])] });
    expect(parseClientHello(buildClientHello(spec))).toMatchObject({
      sni,
      alpn: ['h2', 'http/1.1'],
      supportedVersions: [],
    });
  });

  it('a hello without any extensions block (pre-TLS 1.3 form)', () => {
    const bytes = buildClientHello(hbone({ extensions: undefined, legacyVersion: 0x0301 }));
    expect(parseClientHello(bytes)).toMatchObject({ alpn: [], supportedVersions: [], legacyVersion: 0x0301 });
  });

  it('a hello fragmented across records, one byte per record', () => {
    const handshake = buildHandshake(hbone({ extensions: [sniExtension('x')] }));
    const bytes = buildRecords(handshake, [1]);
    expect(() => parseClientHello(bytes)).toThrow(/more than 16 records/);
    const few = buildRecords(handshake, [Math.ceil(handshake.length / 3)]);
    expect(parseClientHello(few)).toMatchObject({ sni: 'x', bytesConsumed: few.length });
    expect(parseClientHello(bytes, { maxRecords: handshake.length })).toMatchObject({ sni: 'x' });
  });

  it('bytesConsumed stops at the end of the hello; what follows is left alone', () => {
    const bytes = buildClientHello(hbone());
    const more = Uint8Array.from([...bytes, 20, 3, 3, 0, 1, 1, 23, 3, 3]);
    expect(parseClientHello(more)).toMatchObject({ bytesConsumed: bytes.length });
  });

  it('returns frozen results', () => {
    const r = parseClientHello(buildClientHello(hbone())) as ClientHelloInfo;
    expect(Object.isFrozen(r)).toBe(true);
    expect(Object.isFrozen(r.alpn)).toBe(true);
    expect(Object.isFrozen(r.cipherSuites)).toBe(true);
  });
});

describe('parseClientHello says incomplete while a valid prefix is all there is', () => {
  it('for every proper prefix, including the empty buffer', () => {
    const bytes = buildRecords(buildHandshake(hbone({ extensions: [sniExtension('svc')] })), [40]);
    for (let n = 0; n < bytes.length; n++) expect(parseClientHello(bytes.subarray(0, n))).toBe('incomplete');
    expect(parseClientHello(bytes)).toMatchObject({ sni: 'svc' });
  });
});

describe('parseClientHello rejects hostile bytes early, with a reason', () => {
  const good = buildClientHello(hbone());
  const patch = (at: number, ...values: number[]) => {
    const b = Uint8Array.from(good);
    b.set(values, at);
    return b;
  };
  // Offsets: record header 0..4, handshake header 5..8, body from 9.
  it.each<[string, Uint8Array, RegExp]>([
    [
      'plain HTTP',
      new TextEncoder().encode('GET / HTTP/1.1\r\n'),
      /not a TLS handshake record \(content type 71\)/,
    ],
    ['an HTTP/2 preface', new TextEncoder().encode('PRI * HTTP/2.0'), /not a TLS handshake record/],
    ['a TLS alert record', Uint8Array.of(21, 3, 3, 0, 2, 2, 40), /content type 21/],
    ['only the first byte, wrong', Uint8Array.of(0x16 + 1), /not a TLS handshake record/],
    ['SSLv2-style record version', Uint8Array.of(22, 2), /record version is not TLS/],
    ['record minor version 9', Uint8Array.of(22, 3, 9), /record version is not TLS/],
    ['a zero-length record', Uint8Array.of(22, 3, 1, 0, 0), /zero-length handshake record/],
    ['an oversized record', Uint8Array.of(22, 3, 1, 0x40, 0x01), /record length 16385 exceeds 16384/],
    [
      'a ServerHello',
      Uint8Array.of(22, 3, 3, 0, 4, 2, 0, 0, 0),
      /handshake message type 2 is not ClientHello/,
    ],
    [
      'a 16 MB handshake length',
      Uint8Array.of(22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff),
      /ClientHello length 16777215 exceeds 16384/,
    ],
    ['a handshake too short for a ClientHello', Uint8Array.of(22, 3, 1, 0, 4, 1, 0, 0, 5), /too short/],
    ['legacy_version not 3.x', patch(9, 0x7f, 0x03), /legacy_version 0x7f03 is not TLS/],
    ['a session id longer than 32', patch(43, 33), /legacy_session_id/],
    ['an odd cipher_suites length', patch(76, 0, 3), /cipher_suites|overruns/],
    [
      'a non-handshake record between fragments',
      Uint8Array.from([...buildRecords(buildHandshake(hbone()), [10]).subarray(0, 15), 23, 3, 3, 0, 1, 0]),
      /record of content type 23 inside the ClientHello/,
    ],
  ])('%s', (_what, bytes, reason) => {
    expect(reasonOf(bytes)).toMatch(reason);
  });

  it.each<[string, HelloSpec, RegExp]>([
    [
      'an empty compression list',
      hbone({ compression: new Uint8Array(0) }),
      /legacy_compression_methods is empty/,
    ],
    [
      'a duplicate extension',
      hbone({ extensions: [alpnExtension(['h2']), alpnExtension(['h2'])] }),
      /duplicate extension 0x10/,
    ],
    [
      'an empty ALPN name',
      hbone({ extensions: [{ type: 16, data: Uint8Array.of(0, 3, 0, 1, 0x61) }] }),
      /empty protocol name/,
    ],
    [
      'an empty ALPN list',
      hbone({ extensions: [{ type: 16, data: Uint8Array.of(0, 0) }] }),
      /protocol_name_list is empty/,
    ],
    [
      'an ALPN list longer than its extension',
      hbone({ extensions: [{ type: 16, data: Uint8Array.of(0, 9, 2, 0x68, 0x32) }] }),
      /overruns/,
    ],
    [
      'ALPN with trailing bytes',
      hbone({ extensions: [{ type: 16, data: Uint8Array.of(0, 3, 2, 0x68, 0x32, 0) }] }),
      /trailing/,
    ],
    [
      'an empty SNI list',
      hbone({ extensions: [{ type: 0, data: Uint8Array.of(0, 0) }] }),
      /empty server_name_list/,
    ],
    [
      'an SNI extension with no data (ServerHello form)',
      hbone({ extensions: [{ type: 0, data: new Uint8Array(0) }] }),
      /overruns/,
    ],
    ['an SNI with a control character', hbone({ extensions: [sniExtension('a\nb')] }), /not visible ASCII/],
    ['an SNI with non-ASCII', hbone({ extensions: [sniExtension('caf\u00e9')] }), /not visible ASCII/],
    [
      'two host_names',
      hbone({ extensions: [{ type: 0, data: Uint8Array.of(0, 8, 0, 0, 1, 0x61, 0, 0, 1, 0x62) }] }),
      /more than one host_name/,
    ],
    [
      'an empty host_name',
      hbone({ extensions: [{ type: 0, data: Uint8Array.of(0, 3, 0, 0, 0) }] }),
      /empty host_name/,
    ],
    [
      'only unknown name types',
      hbone({ extensions: [{ type: 0, data: Uint8Array.of(0, 4, 7, 0, 1, 0x61) }] }),
      /no host_name/,
    ],
    [
      'an odd supported_versions list',
      hbone({ extensions: [{ type: 43, data: Uint8Array.of(3, 3, 4, 3) }] }),
      /supported_versions/,
    ],
    [
      'an empty supported_versions list',
      hbone({ extensions: [{ type: 43, data: Uint8Array.of(0) }] }),
      /supported_versions/,
    ],
  ])('%s', (_what, spec, reason) => {
    expect(reasonOf(buildClientHello(spec))).toMatch(reason);
  });

  it('an extension whose length overruns the block', () => {
    const hs = buildHandshake(hbone({ extensions: [{ type: 0x1234, data: Uint8Array.of(1, 2, 3, 4) }] }));
    hs[hs.length - 5] = 0x10; // the extension's length, low byte: now 0x0010 > 4 bytes present
    expect(reasonOf(buildRecords(hs))).toMatch(/overruns/);
  });

  it('an extensions block shorter than the rest of the message', () => {
    const hs = buildHandshake(hbone({ extensions: [{ type: 0x1234, data: Uint8Array.of(1, 2, 3, 4) }] }));
    hs[hs.length - 9] = hs[hs.length - 9]! - 1; // the block's length, low byte
    expect(reasonOf(buildRecords(hs))).toMatch(/trailing|overruns/);
  });

  it('data after the ClientHello inside its last record', () => {
    const hs = buildHandshake(hbone());
    expect(reasonOf(buildRecords(Uint8Array.from([...hs, 0, 0, 0])))).toMatch(/data after the ClientHello/);
  });

  it('a handshake larger than the configured limit', () => {
    const bytes = buildClientHello(hbone());
    expect(() => parseClientHello(bytes, { maxHandshakeLength: 50 })).toThrow(/exceeds 50/);
    expect(() => parseClientHello(bytes, { maxRecords: 0 })).toThrow(RangeError);
  });

  it('error has the stable code and name', () => {
    const err = codec.expectStableCode<InvalidClientHelloError>(
      () => parseClientHello(Uint8Array.of(0)),
      'ERR_INVALID_CLIENT_HELLO',
      'InvalidClientHelloError',
    );
    expect(err.offset).toBe(0);
  });
});

// ------------------------------------------------------------------------ properties

const KNOWN = new Set([0, 16, 43]);
const nameArb = fc.stringMatching(/^[\x21-\x7e]{1,40}$/);
const alpnArb = fc.array(fc.string({ unit: 'binary-ascii', minLength: 1, maxLength: 12 }), {
  minLength: 1,
  maxLength: 4,
});
const helloArb = fc
  .record({
    legacyVersion: fc.constantFrom(0x0301, 0x0302, 0x0303),
    random: fc.uint8Array({ minLength: 32, maxLength: 32 }),
    sessionId: fc.uint8Array({ maxLength: 32 }),
    cipherSuites: fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 30 }),
    compression: fc.uint8Array({ minLength: 1, maxLength: 3 }),
    sni: fc.option(nameArb, { nil: undefined }),
    alpn: fc.option(alpnArb, { nil: undefined }),
    versions: fc.option(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 1, maxLength: 6 }), {
      nil: undefined,
    }),
    others: fc.uniqueArray(
      fc.record({
        type: fc.integer({ min: 1, max: 0xffff }).filter((t) => !KNOWN.has(t)),
        data: fc.uint8Array({ maxLength: 40 }),
      }),
      { maxLength: 5, selector: (e) => e.type },
    ),
    noExtensions: fc.boolean(),
    fragments: fc.array(fc.integer({ min: 1, max: 300 }), { minLength: 1, maxLength: 3 }),
    order: fc.nat(),
  })
  .map((h) => {
    const exts = [
      ...(h.sni === undefined ? [] : [sniExtension(h.sni)]),
      ...(h.alpn === undefined ? [] : [alpnExtension(h.alpn)]),
      ...(h.versions === undefined ? [] : [versionsExtension(h.versions)]),
      ...h.others,
    ];
    const rot = exts.length === 0 ? 0 : h.order % exts.length;
    const extensions =
      h.noExtensions && exts.length === 0 ? undefined : [...exts.slice(rot), ...exts.slice(0, rot)];
    const spec: HelloSpec = { ...h, extensions, fragments: h.fragments.map((f) => Math.max(f, 64)) };
    const bytes = buildClientHello(spec);
    const expected: ClientHelloInfo = {
      ...(h.sni === undefined ? {} : { sni: h.sni }),
      alpn: h.alpn ?? [],
      supportedVersions: h.versions ?? [],
      legacyVersion: h.legacyVersion,
      cipherSuites: h.cipherSuites,
      bytesConsumed: bytes.length,
    };
    return { bytes, expected };
  });

const mutatedArb = fc
  .tuple(
    helloArb,
    fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'ins', 'del')), {
      minLength: 1,
      maxLength: 4,
    }),
    fc.option(fc.nat(), { nil: undefined }),
  )
  .map(([{ bytes }, edits, cut]) => {
    const b = [...bytes];
    for (const [at, v, op] of edits) {
      const i = at % (b.length + 1);
      if (op === 'set') b[i] = v;
      else if (op === 'ins') b.splice(i, 0, v);
      else b.splice(i, 1);
    }
    return Uint8Array.from(cut === undefined ? b : b.slice(0, cut % (b.length + 1)));
  });

/** Well-framed hellos whose extension contents may break a rule (empty names, odd lists, repeats). */
const nearValidArb = fc
  .record({
    base: helloArb,
    exts: fc.array(
      fc.oneof(
        fc.string({ unit: 'binary', maxLength: 6 }).map((n) => sniExtension(n)),
        fc
          .array(fc.string({ unit: 'binary-ascii', maxLength: 3 }), { maxLength: 3 })
          .map((ns) => alpnExtension(ns)),
        fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 3 }).map((vs) => versionsExtension(vs)),
        fc
          .tuple(fc.constantFrom(0, 16, 43), fc.uint8Array({ maxLength: 8 }))
          .map(([type, data]) => ({ type, data })),
      ),
      { maxLength: 4 },
    ),
  })
  .map(({ base, exts }) => {
    const hs = buildHandshake({
      legacyVersion: 0x0303,
      random: new Uint8Array(32),
      sessionId: new Uint8Array(0),
      cipherSuites: [0x1301],
      compression: Uint8Array.of(0),
      extensions: exts,
    });
    return base.bytes.length % 2 === 0 ? buildRecords(hs) : buildRecords(hs, [17]);
  });

const outcome = codec.outcomeOf(parseClientHello, InvalidClientHelloError);

describe('properties', () => {
  it('reads back what the model built, however it is fragmented', () => {
    fc.assert(
      fc.property(helloArb, ({ bytes, expected }) => {
        expect(parseClientHello(bytes)).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('agrees with the naive oracle on valid hellos', () => {
    codec.expectOracleAgreement(
      helloArb.map(({ bytes }) => bytes),
      outcome,
      oracleParseClientHello,
      { numRuns: 1000 },
    );
  });

  it('agrees with the naive oracle on mutated and truncated hellos', () => {
    codec.expectOracleAgreement(mutatedArb, outcome, oracleParseClientHello, { numRuns: 5000 });
  });

  it('agrees with the naive oracle on well-framed hellos with rule-breaking extensions', () => {
    codec.expectOracleAgreement(nearValidArb, outcome, oracleParseClientHello, { numRuns: 3000 });
  });

  it('is monotonic: once a prefix is rejected, every longer buffer is rejected too', () => {
    fc.assert(
      fc.property(mutatedArb, fc.nat(), (bytes, at) => {
        if (outcome(bytes.subarray(0, at % (bytes.length + 1))) === 'error')
          expect(outcome(bytes)).toBe('error');
      }),
      { numRuns: 2000 },
    );
  });

  it('a valid hello: every shorter prefix is incomplete, every longer buffer gives the same answer', () => {
    fc.assert(
      fc.property(helloArb, fc.nat(), fc.uint8Array({ maxLength: 8 }), ({ bytes, expected }, at, extra) => {
        const n = at % bytes.length;
        expect(outcome(bytes.subarray(0, n))).toBe('incomplete');
        expect(outcome(Uint8Array.from([...bytes, ...extra]))).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('garbage never throws anything but InvalidClientHelloError', () => {
    codec.expectOnlyThrows(
      InvalidClientHelloError,
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        fc.uint8Array({ maxLength: 600 }).map((b) => Uint8Array.from([22, 3, 1, ...b])),
        fc
          .uint8Array({ maxLength: 600 })
          .map((b) =>
            Uint8Array.from([
              22,
              3,
              1,
              b.length >> 8,
              b.length & 255,
              1,
              0,
              (b.length - 4) >> 8,
              (b.length - 4) & 255,
              ...b,
            ]),
          ),
        mutatedArb,
      ),
      [parseClientHello],
      { numRuns: 5000 },
    );
  });
});
