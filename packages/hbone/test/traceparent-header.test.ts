import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvalidTraceparentError } from '../src/codec-errors.js';
import {
  formatTraceparent,
  newTraceparent,
  parseTraceparent,
  TRACE_FLAG_SAMPLED,
  type Traceparent,
} from '../src/traceparent.js';
import * as codec from './codec-properties.js';
import { oracleParseTraceparent } from './oracles/traceparent.js';

const W3C_EXAMPLE = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('parseTraceparent (W3C Trace Context section 3.2)', () => {
  it('parses the specification example', () => {
    expect(parseTraceparent(W3C_EXAMPLE)).toEqual({
      version: 0,
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentId: '00f067aa0ba902b7',
      flags: TRACE_FLAG_SAMPLED,
    });
    expect(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00').flags).toBe(0);
    expect(Object.isFrozen(parseTraceparent(W3C_EXAMPLE))).toBe(true);
  });

  it('accepts a higher version, longer when the 56th character is "-" (section 3.2.4)', () => {
    expect(parseTraceparent('cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09').version).toBe(0xcc);
    expect(
      parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-holds'),
    ).toEqual({
      version: 1,
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      parentId: '00f067aa0ba902b7',
      flags: 1,
    });
  });

  it.each([
    ['version ff', 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['all-zero trace-id', '00-00000000000000000000000000000000-00f067aa0ba902b7-01'],
    ['all-zero parent-id', '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01'],
    ['uppercase hex', '00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01'],
    ['uppercase version', 'CC-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'],
    ['version 00 with trailing data', `${W3C_EXAMPLE}-extra`],
    ['version 00 with one more character', `${W3C_EXAMPLE}0`],
    [
      'a higher version with trailing data not starting with "-"',
      '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x',
    ],
    ['too short', '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1'],
    ['wrong separator', '00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01'],
    [
      'a "+" sign (Rust from_str_radix would take it)',
      '00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
    ],
    ['padding', ` ${W3C_EXAMPLE}`],
    ['empty', ''],
    // A value that makes ztunnel's own reader (src/proxy.rs TryFrom<&str>) index out of bounds.
    ['55 characters with one dash', `00-${'0'.repeat(52)}`],
    ['55 hex characters', '0'.repeat(55)],
    ['absurdly long', `01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-${'x'.repeat(600)}`],
  ])('rejects %s', (_what, s) => {
    expect(() => parseTraceparent(s)).toThrow(InvalidTraceparentError);
  });

  it('error has the stable code and name', () => {
    codec.expectStableCode(() => parseTraceparent('x'), 'ERR_INVALID_TRACEPARENT', 'InvalidTraceparentError');
  });
});

describe('formatTraceparent / newTraceparent (ztunnel src/proxy.rs TraceParent)', () => {
  it('formats as {:02x}-{:032x}-{:016x}-{:02x}', () => {
    expect(
      formatTraceparent({
        version: 0,
        traceId: '0af7651916cd43dd8448eb211c80319c',
        parentId: 'b7ad6b7169203331',
        flags: 1,
      }),
    ).toBe('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  });

  it('newTraceparent is version 00 with flags 00, fresh random ids each time', () => {
    const a = newTraceparent();
    const b = newTraceparent();
    expect(formatTraceparent(a)).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(a.traceId).not.toBe(b.traceId);
    expect(a.parentId).not.toBe(b.parentId);
  });

  it('draws the trace id then the parent id from the injected source', () => {
    let n = 0;
    const t = newTraceparent((size) => Uint8Array.from({ length: size }, () => ++n));
    expect(formatTraceparent(t)).toBe('00-0102030405060708090a0b0c0d0e0f10-1112131415161718-00');
  });

  it('never produces an all-zero id, even from an all-zero source', () => {
    const t = newTraceparent((size) => new Uint8Array(size));
    expect(formatTraceparent(t)).toBe('00-00000000000000000000000000000001-0000000000000001-00');
    expect(parseTraceparent(formatTraceparent(t))).toEqual(t);
  });

  it('rejects a short random source', () => {
    expect(() => newTraceparent(() => new Uint8Array(3))).toThrow(RangeError);
  });

  it.each<Traceparent>([
    { version: 255, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: 0 },
    { version: -1, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: 0 },
    { version: 0, traceId: '4BF92F3577B34DA6A3CE929D0E0E4736', parentId: '00f067aa0ba902b7', flags: 0 },
    { version: 0, traceId: '0'.repeat(32), parentId: '00f067aa0ba902b7', flags: 0 },
    { version: 0, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '0'.repeat(16), flags: 0 },
    { version: 0, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b', flags: 0 },
    { version: 0, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: 256 },
    { version: 0, traceId: '4bf92f3577b34da6a3ce929d0e0e4736', parentId: '00f067aa0ba902b7', flags: 0.5 },
  ])('formatTraceparent rejects %j', (t) => {
    expect(() => formatTraceparent(t)).toThrow(InvalidTraceparentError);
  });
});

// ------------------------------------------------------------------------ properties

const hex = (n: number) => fc.stringMatching(new RegExp(`^[0-9a-f]{${n}}$`)).filter((s) => !/^0+$/.test(s));
const traceparentArb: fc.Arbitrary<Traceparent> = fc.record({
  version: fc.integer({ min: 0, max: 254 }),
  traceId: hex(32),
  parentId: hex(16),
  flags: fc.integer({ min: 0, max: 255 }),
});
const validText = fc.oneof(
  traceparentArb.map(formatTraceparent),
  fc
    .tuple(traceparentArb, fc.string({ maxLength: 10 }))
    .map(([t, tail]) => `${formatTraceparent(t)}-${tail}`),
);
const NASTY = [...'-0fFgz \u00e9\u0000'];
const mutatedText = codec.mutated(validText, NASTY);
const outcome = codec.outcomeOf(parseTraceparent, InvalidTraceparentError);

describe('properties', () => {
  it('round-trips: parse(format(t)) equals t', () => {
    fc.assert(
      fc.property(traceparentArb, (t) => {
        expect(parseTraceparent(formatTraceparent(t))).toEqual(t);
      }),
      { numRuns: 2000 },
    );
  });

  it('newTraceparent always formats and parses back', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 24, maxLength: 24 }), (bytes) => {
        let off = 0;
        const t = newTraceparent((size) => {
          off += size;
          return bytes.subarray(off - size, off);
        });
        expect(parseTraceparent(formatTraceparent(t))).toEqual(t);
      }),
    );
  });

  it('agrees with the naive oracle on valid and mutated values', () => {
    codec.expectOracleAgreement(fc.oneof(validText, mutatedText), outcome, oracleParseTraceparent, {
      numRuns: 5000,
    });
  });

  it('garbage never throws anything but InvalidTraceparentError', () => {
    codec.expectOnlyThrows(
      InvalidTraceparentError,
      codec.garbage(mutatedText, { minLength: 55, maxLength: 60 }),
      [parseTraceparent],
      { numRuns: 3000 },
    );
  });
});
