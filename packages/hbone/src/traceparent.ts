/**
 * The `traceparent` header (W3C Trace Context, https://www.w3.org/TR/trace-context/ section 3.2).
 *
 * ztunnel (src/proxy.rs `TraceParent`) makes one per downstream connection with version 00, a
 * random 128-bit trace id, a random 64-bit parent id and flags 00 (not sampled), and writes it as
 * `{:02x}-{:032x}-{:016x}-{:02x}`. newTraceparent / formatTraceparent produce the same shape; the
 * one addition is that an all-zero id (invalid, W3C section 3.2.2.3/3.2.2.4) is never produced.
 *
 * parseTraceparent follows the W3C rules, which are stricter than ztunnel's reader (ztunnel checks
 * only the 55-character length and then parses each dash-separated part as hex, accepting
 * uppercase, all-zero ids and version ff): lowercase hex only, ids not all zero, version ff
 * invalid, version 00 exactly 55 characters, a higher version may be longer if the 56th
 * character is `-` (section 3.2.4, forward compatibility; what follows is not kept).
 */

import { randomBytes } from 'node:crypto';
import { InvalidTraceparentError } from './codec-errors.js';

export interface Traceparent {
  /** 0..254 (255 is invalid). */
  readonly version: number;
  /** 32 lowercase hex characters, not all zero. */
  readonly traceId: string;
  /** 16 lowercase hex characters, not all zero (the span id of the caller). */
  readonly parentId: string;
  /** 0..255; bit 0 is `sampled` (TRACE_FLAG_SAMPLED). */
  readonly flags: number;
}

export const TRACE_FLAG_SAMPLED = 0x01;

/** Length of a version-00 traceparent: 2 + 1 + 32 + 1 + 16 + 1 + 2. */
export const TRACEPARENT_LENGTH = 55;

const LOWER_HEX = /^[0-9a-f]+$/;
const ALL_ZERO = /^0+$/;

function hexField(s: string, start: number, len: number, what: string, input: string): string {
  const field = s.slice(start, start + len);
  if (field.length !== len || !LOWER_HEX.test(field)) {
    throw new InvalidTraceparentError(`${what} must be ${len} lowercase hex characters`, input);
  }
  return field;
}

/**
 * Parses a `traceparent` header value.
 * @throws InvalidTraceparentError.
 */
export function parseTraceparent(s: string): Traceparent {
  if (typeof s !== 'string') throw new InvalidTraceparentError('not a string', String(s));
  if (s.length < TRACEPARENT_LENGTH) throw new InvalidTraceparentError('too short', s);
  // Longer values are only legal for future versions; bound the work for hostile input anyway.
  if (s.length > 512) throw new InvalidTraceparentError('too long', s);
  const version = Number.parseInt(hexField(s, 0, 2, 'version', s), 16);
  if (version === 0xff) throw new InvalidTraceparentError('version ff is invalid', s);
  for (const dash of [2, 35, 52]) {
    if (s.charCodeAt(dash) !== 0x2d) throw new InvalidTraceparentError('fields must be separated by "-"', s);
  }
  const traceId = hexField(s, 3, 32, 'trace-id', s);
  const parentId = hexField(s, 36, 16, 'parent-id', s);
  const flags = Number.parseInt(hexField(s, 53, 2, 'trace-flags', s), 16);
  if (ALL_ZERO.test(traceId)) throw new InvalidTraceparentError('trace-id is all zero', s);
  if (ALL_ZERO.test(parentId)) throw new InvalidTraceparentError('parent-id is all zero', s);
  if (s.length > TRACEPARENT_LENGTH) {
    if (version === 0) throw new InvalidTraceparentError('version 00 must be exactly 55 characters', s);
    if (s.charCodeAt(TRACEPARENT_LENGTH) !== 0x2d) {
      throw new InvalidTraceparentError('data after trace-flags must start with "-"', s);
    }
  }
  return Object.freeze({ version, traceId, parentId, flags });
}

function hex2(n: number): string {
  return n.toString(16).padStart(2, '0');
}

/**
 * Writes `<version>-<trace-id>-<parent-id>-<flags>` (two lowercase hex digits for version and flags),
 * the format ztunnel writes.
 * @throws InvalidTraceparentError when a field is out of range.
 */
export function formatTraceparent(t: Traceparent): string {
  const { version, traceId, parentId, flags } = t;
  if (!Number.isInteger(version) || version < 0 || version > 0xfe) {
    throw new InvalidTraceparentError('version must be an integer 0..254', String(version));
  }
  if (traceId.length !== 32 || !LOWER_HEX.test(traceId) || ALL_ZERO.test(traceId)) {
    throw new InvalidTraceparentError('trace-id must be 32 lowercase hex characters, not all zero', traceId);
  }
  if (parentId.length !== 16 || !LOWER_HEX.test(parentId) || ALL_ZERO.test(parentId)) {
    throw new InvalidTraceparentError(
      'parent-id must be 16 lowercase hex characters, not all zero',
      parentId,
    );
  }
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xff) {
    throw new InvalidTraceparentError('flags must be an integer 0..255', String(flags));
  }
  return `${hex2(version)}-${traceId}-${parentId}-${hex2(flags)}`;
}

/** Source of random bytes: `crypto.randomBytes` by default, injectable for tests. */
export type RandomBytes = (size: number) => Uint8Array;

function randomId(random: RandomBytes, size: number): string {
  const bytes = Uint8Array.from(random(size).subarray(0, size));
  if (bytes.length !== size) throw new RangeError(`random source returned fewer than ${size} bytes`);
  // An all-zero id is invalid (W3C section 3.2.2.3); the odds are 2^-64 at worst, so forcing one
  // bit costs no meaningful randomness and keeps a deterministic test source from looping.
  if (bytes.every((b) => b === 0)) bytes[size - 1] = 1;
  return Buffer.from(bytes).toString('hex');
}

/**
 * Random bytes served from a pool refilled 4 KiB at a time: a traceparent per tunnel would
 * otherwise cost two `crypto.randomBytes` calls (about 10 us each) on the open path.
 */
const RANDOM_POOL_BYTES = 4096;
let randomPool = Buffer.alloc(0);
let randomOffset = 0;
export function pooledRandomBytes(size: number): Uint8Array {
  if (randomOffset + size > randomPool.length) {
    randomPool = randomBytes(Math.max(RANDOM_POOL_BYTES, size));
    randomOffset = 0;
  }
  const out = randomPool.subarray(randomOffset, randomOffset + size);
  randomOffset += size;
  return out;
}

/**
 * A fresh traceparent as ztunnel makes one per connection: version 00, random ids, flags 00.
 */
export function newTraceparent(random: RandomBytes = pooledRandomBytes): Traceparent {
  return Object.freeze({
    version: 0,
    traceId: randomId(random, 16),
    parentId: randomId(random, 8),
    flags: 0,
  });
}
