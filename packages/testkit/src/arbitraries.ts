/**
 * fast-check arbitraries for SPIFFE IDs (SPIFFE-ID standard, section 2): valid ones, Istio-shaped
 * ones, and invalid ones labelled with the one rule each breaks.
 *
 * Invalid inputs are built from a valid ID with exactly one fault injected, placed so that a
 * left-to-right parser meets that fault first (go-spiffe's order: empty, scheme, trust domain
 * characters, missing trust domain, then the path). Expecting the labelled reason is thus fair.
 */
import * as fc from 'fast-check';
import type { InvalidIdReason } from './invalid-id-reasons.js';

/** SPIFFE-ID 2.1: trust domain names use lowercase letters, digits, dot, dash, underscore. */
const TRUST_DOMAIN_CHARS = [...'abcdefghijklmnopqrstuvwxyz0123456789._-'];
/** SPIFFE-ID 2.2: path segments also allow uppercase (the path is case-sensitive, 2.4). */
const SEGMENT_CHARS = [...TRUST_DOMAIN_CHARS, ...'ABCDEFGHIJKLMNOPQRSTUVWXYZ'];
const SEGMENT_CHARS_NO_DOT = SEGMENT_CHARS.filter((c) => c !== '.');

/** SPIFFE-ID 2.3: a host, so a trust domain name, is at most 255 bytes (RFC 3986). */
export const MAX_TRUST_DOMAIN_LENGTH = 255;
/** SPIFFE-ID 2.3: implementations MUST support IDs up to 2048 bytes and SHOULD NOT generate longer ones. */
export const MAX_SPIFFE_ID_LENGTH = 2048;

/** A fixed string, or an arbitrary of strings (e.g. {@link SpiffeIdArbitraryOptions.trustDomain}). */
export type StringSource = string | fc.Arbitrary<string>;
const arb = (s: StringSource): fc.Arbitrary<string> => (typeof s === 'string' ? fc.constant(s) : s);

/**
 * A valid trust domain name: usually DNS-shaped (`cluster.local`, `a-b.example`), sometimes any mix
 * of the allowed characters (`._`, `-`, `..`: legal, and exactly what parsers get wrong).
 */
export function arbTrustDomainName(opts: { maxLength?: number } = {}): fc.Arbitrary<string> {
  const max = Math.min(opts.maxLength ?? 63, MAX_TRUST_DOMAIN_LENGTH);
  const label = fc
    .string({
      unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'),
      minLength: 1,
      maxLength: 20,
    })
    .filter((s) => !s.startsWith('-') && !s.endsWith('-'));
  const dnsLike = fc.array(label, { minLength: 1, maxLength: 4 }).map((labels) => labels.join('.'));
  const anyChars = fc.string({ unit: fc.constantFrom(...TRUST_DOMAIN_CHARS), minLength: 1, maxLength: max });
  return fc
    .oneof(
      { weight: 2, arbitrary: fc.constantFrom('cluster.local', 'example.org', 'td', 'a') },
      { weight: 5, arbitrary: dnsLike },
      { weight: 3, arbitrary: anyChars },
    )
    .map((td) => td.slice(0, max)); // cutting keeps it valid: every character is allowed anywhere
}

/** One valid path segment: non-empty, allowed characters, never `.` or `..`. */
export function arbPathSegment(opts: { maxLength?: number } = {}): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 1, arbitrary: fc.constantFrom('ns', 'sa', 'default', 'workload', '...', '.a', '_', '-') },
    {
      weight: 4,
      arbitrary: fc
        .string({ unit: fc.constantFrom(...SEGMENT_CHARS), minLength: 1, maxLength: opts.maxLength ?? 24 })
        .filter((s) => s !== '.' && s !== '..'),
    },
  );
}

export interface SpiffeIdArbitraryOptions {
  /** A fixed trust domain, or an arbitrary of them; default `arbTrustDomainName()`. */
  trustDomain?: StringSource;
  /**
   * 'optional' (default): IDs may have no path (`spiffe://td`, a valid SPIFFE ID naming the trust
   * domain). 'required': always a non-root path, as leaf X509-SVIDs need (X509-SVID 3.1).
   */
  path?: 'optional' | 'required';
}

/** A valid SPIFFE ID string of at most 2048 bytes; about one in ten is 2000..2048 bytes long. */
export function arbSpiffeIdString(opts: SpiffeIdArbitraryOptions = {}): fc.Arbitrary<string> {
  const td = arb(opts.trustDomain ?? arbTrustDomainName());
  const minSegments = opts.path === 'required' ? 1 : 0;
  const ordinary = fc
    .record({ td, segments: fc.array(arbPathSegment(), { minLength: minSegments, maxLength: 8 }) })
    .map(({ td, segments }) => `spiffe://${td}${segments.map((s) => `/${s}`).join('')}`)
    .filter((id) => Buffer.byteLength(id) <= MAX_SPIFFE_ID_LENGTH); // only bites for long fixed trust domains
  const long = fc
    .record({
      td,
      length: fc.integer({ min: 2000, max: MAX_SPIFFE_ID_LENGTH }),
      fill: fc.string({ unit: fc.constantFrom(...SEGMENT_CHARS_NO_DOT), minLength: 1, maxLength: 16 }),
    })
    .map(({ td, length, fill }) => longId(`spiffe://${td}`, length, fill));
  return fc.oneof({ weight: 9, arbitrary: ordinary }, { weight: 1, arbitrary: long });
}

/** Pads `prefix` with segments of `fill` (no dots, so never a dot segment) to exactly `length` bytes. */
function longId(prefix: string, length: number, fill: string): string {
  let remaining = length - prefix.length;
  let path = '';
  while (remaining >= 2) {
    // A segment costs its length + 1 for the slash; never leave exactly 1 byte, which fits no segment.
    let take = Math.min(remaining - 1, 255);
    if (remaining - (take + 1) === 1) take -= 1;
    path += `/${fill.repeat(Math.ceil(take / fill.length)).slice(0, take)}`;
    remaining -= take + 1;
  }
  return prefix + path;
}

/** DNS-1123 label (a Kubernetes namespace name): `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63. */
function arbDns1123Label(): fc.Arbitrary<string> {
  return fc
    .string({
      unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-'),
      minLength: 1,
      maxLength: 63,
    })
    .filter((s) => !s.startsWith('-') && !s.endsWith('-'));
}

/** Istio's identity shape, `spiffe://<td>/ns/<namespace>/sa/<service account>`. */
export function arbIstioSpiffeIdString(opts: { trustDomain?: StringSource } = {}): fc.Arbitrary<string> {
  const td = arb(
    opts.trustDomain ?? fc.oneof(fc.constant('cluster.local'), arbTrustDomainName({ maxLength: 63 })),
  );
  // Service account names are DNS-1123 subdomains: labels joined by dots.
  const sa = fc
    .array(arbDns1123Label(), { minLength: 1, maxLength: 3 })
    .map((l) => l.join('.').slice(0, 253));
  return fc
    .record({ td, ns: arbDns1123Label(), sa })
    .map(({ td, ns, sa }) => `spiffe://${td}/ns/${ns}/sa/${sa.replace(/[.-]+$/, '') || 'default'}`);
}

export interface InvalidSpiffeId {
  input: string;
  reason: InvalidIdReason;
}

// Characters outside the allowed sets, other than '/', which would move the trust domain/path split.
// Named ones cover the standard's explicit exclusions: uppercase trust domain, port, userinfo,
// percent-encoding, query, fragment (SPIFFE-ID 2, 2.1, 2.2).
const BAD_TRUST_DOMAIN_FRAGMENTS = [
  'A',
  'Z',
  ':8443',
  ':',
  'user@',
  '@',
  '%41',
  '%',
  '?x',
  '#x',
  ' ',
  '+',
  '~',
  'é',
  '\u0000',
  '[',
  '!',
];
const BAD_SEGMENT_FRAGMENTS = [
  '%41',
  '%2F',
  '%',
  '?query',
  '?',
  '#fragment',
  '#',
  ' ',
  ':',
  '@',
  '+',
  '~',
  '=',
  'é',
  '\\',
  '\u007f',
  '*',
];

function arbBadChar(allowed: readonly string[], fragments: readonly string[]): fc.Arbitrary<string> {
  const allowedSet = new Set([...allowed, '/']);
  return fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(...fragments) },
    {
      weight: 1,
      arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }).filter((c) => !allowedSet.has(c)),
    },
  );
}

const joinPath = (segments: readonly string[]): string => segments.map((s) => `/${s}`).join('');

/** An invalid SPIFFE ID string and the rule it breaks; `reasons` narrows which rules are drawn. */
export function arbInvalidSpiffeIdString(
  opts: { reasons?: readonly InvalidIdReason[] } = {},
): fc.Arbitrary<InvalidSpiffeId> {
  const td = arbTrustDomainName();
  const segments = (minLength: number) => fc.array(arbPathSegment(), { minLength, maxLength: 5 });
  const tagged = (reason: InvalidIdReason) => (input: string) => ({ input, reason });

  const byReason: Record<InvalidIdReason, fc.Arbitrary<InvalidSpiffeId>> = {
    empty: fc.constant({ input: '', reason: 'empty' as const }),
    'wrong-scheme': fc
      .oneof(
        fc
          .record({
            scheme: fc.constantFrom(
              '',
              'SPIFFE://',
              'Spiffe://',
              'spiffe:/',
              'spiffe:',
              'spiffe//',
              ' spiffe://',
              'https://',
              'urn:spiffe:',
            ),
            td,
            path: segments(0),
          })
          .map(({ scheme, td, path }) => scheme + td + joinPath(path)),
        fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }),
      )
      .filter((s) => s !== '' && !s.startsWith('spiffe://'))
      .map(tagged('wrong-scheme')),
    // No trust domain: go-spiffe reports it before looking at the path, whatever follows.
    'missing-trust-domain': segments(0)
      .map((p) => `spiffe://${joinPath(p)}`)
      .map(tagged('missing-trust-domain')),
    'bad-trust-domain-char': fc
      .record({
        td,
        at: fc.nat(),
        bad: arbBadChar(TRUST_DOMAIN_CHARS, BAD_TRUST_DOMAIN_FRAGMENTS),
        path: segments(0),
      })
      .map(({ td, at, bad, path }) => {
        const i = at % (td.length + 1);
        return `spiffe://${td.slice(0, i)}${bad}${td.slice(i)}${joinPath(path)}`;
      })
      .map(tagged('bad-trust-domain-char')),
    'bad-path-segment-char': fc
      .record({
        td,
        path: segments(1),
        which: fc.nat(),
        at: fc.nat(),
        bad: arbBadChar(SEGMENT_CHARS, BAD_SEGMENT_FRAGMENTS),
      })
      .map(({ td, path, which, at, bad }) => {
        const j = which % path.length;
        const seg = path[j] ?? '';
        const i = at % (seg.length + 1);
        const broken = path.map((s, k) => (k === j ? s.slice(0, i) + bad + s.slice(i) : s));
        return `spiffe://${td}${joinPath(broken)}`;
      })
      .map(tagged('bad-path-segment-char')),
    // '//' anywhere but at the very end ('a//' is still an empty segment; a lone trailing '/' is not).
    'empty-segment': fc
      .record({ td, path: segments(1), at: fc.nat() })
      .map(({ td, path, at }) => {
        const broken = [...path];
        broken.splice(at % path.length, 0, '');
        return `spiffe://${td}${joinPath(broken)}`;
      })
      .map(tagged('empty-segment')),
    'dot-segment': fc
      .record({ td, path: segments(0), at: fc.nat(), dots: fc.constantFrom('.', '..') })
      .map(({ td, path, at, dots }) => {
        const broken = [...path];
        broken.splice(at % (path.length + 1), 0, dots);
        return `spiffe://${td}${joinPath(broken)}`;
      })
      .map(tagged('dot-segment')),
    'trailing-slash': fc
      .record({ td, path: segments(0) })
      .map(({ td, path }) => `spiffe://${td}${joinPath(path)}/`)
      .map(tagged('trailing-slash')),
  };
  const reasons = opts.reasons ?? (Object.keys(byReason) as InvalidIdReason[]);
  if (reasons.length === 0) throw new RangeError('arbInvalidSpiffeIdString: no reasons to draw from');
  return fc.oneof(...reasons.map((r) => byReason[r]));
}
