/**
 * The `baggage` header of an HBONE CONNECT (and of ztunnel's 200 response): the source
 * workload's attributes, in W3C Baggage syntax (https://www.w3.org/TR/baggage/).
 *
 * Writing follows ztunnel exactly (src/baggage.rs `baggage_header_val`, fed by
 * src/state/workload.rs `Workload::baggage`, which drops empty strings): `key=value` pairs joined
 * by `,` with no spaces, in the fixed order `k8s.cluster.name`, `k8s.namespace.name`,
 * `k8s.<kind>.name`, `service.name`, `service.version`, `cloud.region`,
 * `cloud.availability_zone`; an empty attribute set gives the empty string (ztunnel still sends
 * the header). The one addition: a value character outside W3C `baggage-octet`, and `%`, is
 * percent-encoded (W3C section 3.2.1.1 requires it); Kubernetes names never contain one, so for
 * them the bytes equal ztunnel's, which writes values raw.
 *
 * Reading is a tolerant W3C parser (OWS around members, `=` and `;`, properties, percent-decoding,
 * repeated keys, empty list members) that rejects the whole header, never returning part of it,
 * when a character is outside visible ASCII plus SP/HTAB (the set `http::HeaderValue::to_str`
 * accepts, so ztunnel fails on the same headers), when the grammar is broken, or when a limit is
 * exceeded.
 */

import { InvalidBaggageError } from './codec-errors.js';

export type WorkloadKind = 'deployment' | 'cronjob' | 'pod' | 'job';

/** The Istio workload types (workload.proto `WorkloadType`, lowercased as ztunnel does). */
export const WORKLOAD_KINDS: readonly WorkloadKind[] = Object.freeze(['deployment', 'cronjob', 'pod', 'job']);

export interface WorkloadAttributes {
  readonly clusterName?: string;
  readonly namespace?: string;
  /** Defaults to `deployment` when writing, as ztunnel's proto enum default (DEPLOYMENT = 0). */
  readonly workloadKind?: WorkloadKind;
  readonly workloadName?: string;
  /** Istio canonical service name. */
  readonly serviceName?: string;
  /** Istio canonical revision. */
  readonly serviceVersion?: string;
  readonly region?: string;
  readonly zone?: string;
}

export interface BaggageProperty {
  readonly key: string;
  /** Percent-decoded; undefined for a bare `;key` property. */
  readonly value?: string;
}

export interface BaggageEntry {
  readonly key: string;
  /** Percent-decoded (invalid UTF-8 becomes U+FFFD, W3C section 3.2.1.1). */
  readonly value: string;
  readonly properties: readonly BaggageProperty[];
}

export interface BaggageLimits {
  /** Most list members accepted (W3C grammar `0*179`, as OpenTelemetry enforces). Default 180. */
  readonly maxMembers?: number;
  /** Longest header accepted, in bytes (W3C "Limits"). Default 8192. */
  readonly maxBytes?: number;
}

export const DEFAULT_BAGGAGE_MAX_MEMBERS = 180;
export const DEFAULT_BAGGAGE_MAX_BYTES = 8192;

/** RFC 9110 section 5.6.2 `tchar`, the characters of a baggage `key`. */
function isTchar(c: number): boolean {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true;
  // ! # $ % & ' * + - . ^ _ ` | ~
  return (
    c === 0x21 ||
    (c >= 0x23 && c <= 0x27) ||
    c === 0x2a ||
    c === 0x2b ||
    c === 0x2d ||
    c === 0x2e ||
    c === 0x5e ||
    c === 0x5f ||
    c === 0x60 ||
    c === 0x7c ||
    c === 0x7e
  );
}

/** W3C `baggage-octet`: visible ASCII except DQUOTE, comma, semicolon and backslash. */
function isBaggageOctet(c: number): boolean {
  return c >= 0x21 && c <= 0x7e && c !== 0x22 && c !== 0x2c && c !== 0x3b && c !== 0x5c;
}

const HEX = '0123456789ABCDEF';
const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** Percent-encodes (UTF-8) every character that is not a `baggage-octet`, and `%` itself. */
export function encodeBaggageValue(value: string): string {
  let out = '';
  for (const byte of utf8Encoder.encode(value)) {
    if (isBaggageOctet(byte) && byte !== 0x25) out += String.fromCharCode(byte);
    else out += `%${HEX[byte >> 4]}${HEX[byte & 0xf]}`;
  }
  return out;
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * Percent-decodes a value already checked to be baggage-octets. Sequences that are not valid UTF-8
 * become U+FFFD (W3C section 3.2.1.1); a `%` not followed by two hex digits is kept as it is.
 */
export function decodeBaggageValue(raw: string): string {
  if (!raw.includes('%')) return raw;
  const bytes = new Uint8Array(raw.length);
  let n = 0;
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i);
    if (c === 0x25 && i + 2 < raw.length) {
      const hi = hexValue(raw.charCodeAt(i + 1));
      const lo = hexValue(raw.charCodeAt(i + 2));
      if (hi >= 0 && lo >= 0) {
        bytes[n++] = (hi << 4) | lo;
        i += 2;
        continue;
      }
    }
    bytes[n++] = c;
  }
  return utf8Decoder.decode(bytes.subarray(0, n));
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function trimOws(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && isOws(s.charCodeAt(a))) a++;
  while (b > a && isOws(s.charCodeAt(b - 1))) b--;
  return s.slice(a, b);
}

function checkKey(key: string, header: string): void {
  if (key.length === 0) throw new InvalidBaggageError('empty key', header);
  for (let i = 0; i < key.length; i++) {
    if (!isTchar(key.charCodeAt(i))) throw new InvalidBaggageError('key is not an RFC 9110 token', header);
  }
}

function checkValue(value: string, header: string): void {
  for (let i = 0; i < value.length; i++) {
    if (!isBaggageOctet(value.charCodeAt(i))) {
      throw new InvalidBaggageError('value has a character outside baggage-octet', header);
    }
  }
}

function positiveLimit(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return v;
}

/**
 * Parses a W3C `baggage` header (several header lines may be given; they are joined with `,` as
 * RFC 9110 section 5.3 allows). Returns every member in order, repeats included.
 * @throws InvalidBaggageError for the whole header: a character outside visible ASCII, SP and HTAB;
 *   a member without `=`; a key that is not a token; a value or property with a character outside
 *   `baggage-octet`; more than `maxMembers` members or more than `maxBytes` bytes.
 */
export function parseBaggage(header: string | readonly string[], limits: BaggageLimits = {}): BaggageEntry[] {
  const maxMembers = positiveLimit(limits.maxMembers, DEFAULT_BAGGAGE_MAX_MEMBERS, 'maxMembers');
  const maxBytes = positiveLimit(limits.maxBytes, DEFAULT_BAGGAGE_MAX_BYTES, 'maxBytes');
  const text = typeof header === 'string' ? header : header.join(',');
  // Checked first, before any splitting: a non-ASCII character makes the whole header invalid,
  // and in ASCII characters equal bytes, so the length check below counts bytes.
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (!(c >= 0x20 && c <= 0x7e) && c !== 0x09) {
      throw new InvalidBaggageError(
        `character 0x${c.toString(16).padStart(2, '0')} outside visible ASCII`,
        text,
      );
    }
  }
  if (text.length > maxBytes) throw new InvalidBaggageError(`longer than ${maxBytes} bytes`, text);
  const entries: BaggageEntry[] = [];
  for (const rawMember of text.split(',')) {
    const member = trimOws(rawMember);
    if (member === '') continue; // tolerated, as RFC 9110 section 5.6.1 asks of list recipients
    if (entries.length === maxMembers) throw new InvalidBaggageError(`more than ${maxMembers} members`, text);
    const [kv, ...props] = member.split(';');
    const eq = kv!.indexOf('=');
    if (eq < 0) throw new InvalidBaggageError('member without "="', text);
    const key = trimOws(kv!.slice(0, eq));
    const rawValue = trimOws(kv!.slice(eq + 1));
    checkKey(key, text);
    checkValue(rawValue, text);
    const properties: BaggageProperty[] = [];
    for (const rawProp of props) {
      const prop = trimOws(rawProp);
      const peq = prop.indexOf('=');
      if (peq < 0) {
        checkKey(prop, text);
        properties.push(Object.freeze({ key: prop }));
        continue;
      }
      const pkey = trimOws(prop.slice(0, peq));
      const pvalue = trimOws(prop.slice(peq + 1));
      checkKey(pkey, text);
      checkValue(pvalue, text);
      properties.push(Object.freeze({ key: pkey, value: decodeBaggageValue(pvalue) }));
    }
    entries.push(
      Object.freeze({ key, value: decodeBaggageValue(rawValue), properties: Object.freeze(properties) }),
    );
  }
  return Object.freeze(entries) as BaggageEntry[];
}

const ATTRIBUTE_KEYS: ReadonlyArray<readonly [keyof WorkloadAttributes, string]> = [
  ['clusterName', 'k8s.cluster.name'],
  ['namespace', 'k8s.namespace.name'],
  ['serviceName', 'service.name'],
  ['serviceVersion', 'service.version'],
  // https://opentelemetry.io/docs/specs/semconv/attributes-registry/cloud/
  ['region', 'cloud.region'],
  ['zone', 'cloud.availability_zone'],
];

/**
 * Writes the baggage ztunnel sends for a workload (see the module comment for the exact format).
 * @throws InvalidBaggageError when `workloadKind` is not one of WORKLOAD_KINDS.
 */
export function formatBaggage(attrs: WorkloadAttributes): string {
  const kind = attrs.workloadKind ?? 'deployment';
  if (!WORKLOAD_KINDS.includes(kind)) throw new InvalidBaggageError('unknown workload kind', String(kind));
  const pairs: Array<readonly [string, string | undefined]> = [
    ['k8s.cluster.name', attrs.clusterName],
    ['k8s.namespace.name', attrs.namespace],
    [`k8s.${kind}.name`, attrs.workloadName],
    ['service.name', attrs.serviceName],
    ['service.version', attrs.serviceVersion],
    ['cloud.region', attrs.region],
    ['cloud.availability_zone', attrs.zone],
  ];
  const out: string[] = [];
  for (const [key, value] of pairs) {
    if (value !== undefined && value !== '') out.push(`${key}=${encodeBaggageValue(value)}`);
  }
  return out.join(',');
}

const KIND_BY_KEY: ReadonlyMap<string, WorkloadKind> = new Map(
  WORKLOAD_KINDS.map((k) => [`k8s.${k}.name`, k] as const),
);

/**
 * Maps the Kubernetes / OpenTelemetry keys of a baggage header to typed attributes, other keys
 * ignored. As ztunnel's `parse_baggage_header` (src/baggage.rs) does, members are applied in order
 * so the LAST occurrence of a key wins, and an empty value clears what an earlier one set; the four
 * `k8s.<kind>.name` keys share one slot (name and kind come from the last of them).
 * Key matching is exact (case-sensitive), as in ztunnel.
 * @throws InvalidBaggageError as parseBaggage. ztunnel treats an unreadable header as empty
 *   (`unwrap_or_default()` in src/proxy/inbound.rs): a caller wanting that catches and uses `{}`.
 */
export function parseWorkloadAttributes(
  header: string | readonly string[],
  limits?: BaggageLimits,
): WorkloadAttributes {
  const acc: { -readonly [K in keyof WorkloadAttributes]: WorkloadAttributes[K] } = {};
  for (const { key, value } of parseBaggage(header, limits)) {
    const kind = KIND_BY_KEY.get(key);
    if (kind !== undefined) {
      if (value === '') {
        delete acc.workloadName;
        delete acc.workloadKind;
      } else {
        acc.workloadName = value;
        acc.workloadKind = kind;
      }
      continue;
    }
    for (const [attr, k] of ATTRIBUTE_KEYS) {
      if (k !== key) continue;
      if (value === '') delete acc[attr];
      else (acc as Record<string, string>)[attr] = value;
    }
  }
  return Object.freeze(acc);
}
