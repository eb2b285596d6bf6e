/**
 * The `:authority` of an HBONE CONNECT request: `ipv4:port`, `[ipv6]:port`, or `hostname:port`
 * (the last only for double HBONE, where both the outer and inner CONNECT name the service).
 *
 * ztunnel (src/proxy.rs, `impl TryFrom<&http::Uri> for HboneAddress`) first tries Rust's
 * `SocketAddr::from_str` on the authority and falls back to a service hostname; it writes the
 * authority with `SocketAddr`'s `Display` (src/proxy/outbound.rs, `create_hbone_request`). So:
 *
 * - formatting matches Rust's `SocketAddr` Display exactly: IPv6 in brackets, lowercase, the
 *   longest run (two or more) of zero groups compressed to `::` (the first on a tie, RFC 5952
 *   section 4.2.3), no leading zeros in groups, and IPv4-mapped addresses as `::ffff:a.b.c.d`.
 *   Any other IPv4-embedding form (`::1.2.3.4`, `64:ff9b::1.2.3.4`) prints in hex, as Rust does.
 * - parsing accepts every IPv6 text form of RFC 4291 section 2.2 that Rust accepts (1-4 hex
 *   digits per group, either case, one `::` standing for at least one zero group, a trailing
 *   dotted quad) and canonicalises `host` to the form above.
 *
 * Deliberate differences from Rust's parser, all stricter, none reachable by what ztunnel sends:
 * - the port must be decimal 1..65535 without leading zeros (Rust accepts `080` and port 0);
 * - zone / scope IDs are rejected (Rust accepts a numeric `[fe80::1%2]:80`): a zone is
 *   meaningless to the remote end of a tunnel;
 * - a hostname must follow RFC 1123 (ztunnel takes whatever `http::Uri` accepts as a host).
 */

import { InvalidAuthorityError } from './codec-errors.js';

export type AuthorityKind = 'ipv4' | 'ipv6' | 'hostname';

export interface Authority {
  readonly kind: AuthorityKind;
  /** Dotted quad, canonical IPv6 text without brackets, or an RFC 1123 hostname (case kept). */
  readonly host: string;
  /** 1..65535. */
  readonly port: number;
}

/** An IP literal in canonical text, as `canonicalizeIp` returns it. */
export interface CanonicalIp {
  readonly kind: 'ipv4' | 'ipv6';
  readonly host: string;
}

// Longest textual forms: a hostname (253) + ":" + port (5); "[" + 45-char IPv6 + "]:" + port.
const MAX_AUTHORITY_LENGTH = 253 + 1 + 5;

/** Strict dotted quad: four decimal octets 0..255, no leading zeros (`010` is octal to some parsers). */
function parseIpv4Octets(s: string): number[] | undefined {
  const parts = s.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (p.length === 0 || p.length > 3) return undefined;
    for (let i = 0; i < p.length; i++) {
      const c = p.charCodeAt(i);
      if (c < 0x30 || c > 0x39) return undefined;
    }
    if (p.length > 1 && p.charCodeAt(0) === 0x30) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

function isHexDigit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Groups of one side of a `::` (or of a whole address without one); an IPv4 tail counts as two. */
function parseIpv6Part(part: string, allowIpv4Tail: boolean): number[] | undefined {
  if (part === '') return [];
  const pieces = part.split(':');
  const out: number[] = [];
  for (let i = 0; i < pieces.length; i++) {
    const piece = pieces[i]!;
    if (allowIpv4Tail && i === pieces.length - 1 && piece.includes('.')) {
      const v4 = parseIpv4Octets(piece);
      if (v4 === undefined) return undefined;
      out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      continue;
    }
    if (piece.length === 0 || piece.length > 4) return undefined;
    for (let j = 0; j < piece.length; j++) if (!isHexDigit(piece.charCodeAt(j))) return undefined;
    out.push(Number.parseInt(piece, 16));
  }
  return out;
}

/** The eight 16-bit groups of an IPv6 address in RFC 4291 section 2.2 text, or undefined. */
function parseIpv6Groups(s: string): number[] | undefined {
  // 45 = six "ffff:" groups + a 15-character dotted quad, the longest valid form.
  if (s.length < 2 || s.length > 45) return undefined;
  const dbl = s.indexOf('::');
  if (dbl < 0) {
    const groups = parseIpv6Part(s, true);
    return groups !== undefined && groups.length === 8 ? groups : undefined;
  }
  if (s.indexOf('::', dbl + 1) >= 0) return undefined; // at most one "::"
  const head = parseIpv6Part(s.slice(0, dbl), false);
  const tail = parseIpv6Part(s.slice(dbl + 2), true);
  if (head === undefined || tail === undefined) return undefined;
  // "::" stands for one or more zero groups (RFC 4291 section 2.2 item 2; Rust agrees).
  if (head.length + tail.length > 7) return undefined;
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

/** Rust's `Ipv6Addr` Display (RFC 5952 compression; IPv4-mapped as `::ffff:a.b.c.d`). */
function formatIpv6Groups(g: readonly number[]): string {
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    const a = g[6]!;
    const b = g[7]!;
    return `::ffff:${a >> 8}.${a & 0xff}.${b >> 8}.${b & 0xff}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (xs: readonly number[]) => xs.map((x) => x.toString(16)).join(':');
  if (bestLen < 2) return hex(g);
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`;
}

/**
 * Canonical text of an IP literal (no brackets, no zone): a strict dotted quad, or IPv6 as Rust
 * prints it. Undefined when `s` is not one.
 */
export function canonicalizeIp(s: string): CanonicalIp | undefined {
  if (s.includes(':')) {
    const groups = parseIpv6Groups(s);
    return groups === undefined ? undefined : { kind: 'ipv6', host: formatIpv6Groups(groups) };
  }
  return parseIpv4Octets(s) === undefined ? undefined : { kind: 'ipv4', host: s };
}

/**
 * RFC 1123 section 2.1 host name: dot-separated labels of letters, digits and hyphens, 1..63
 * characters each, not starting or ending with a hyphen, at most 253 characters in all, no
 * trailing dot. The last label must not be all digits: RFC 1123 notes a host name never has the
 * dotted-decimal form, and this keeps `010.0.0.1` (a malformed IP, octal to some resolvers) out.
 */
export function isValidHostname(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  const labels = s.split('.');
  for (const label of labels) {
    if (label.length === 0 || label.length > 63) return false;
    for (let i = 0; i < label.length; i++) {
      const c = label.charCodeAt(i);
      const alnum = (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
      if (!alnum && !(c === 0x2d && i !== 0 && i !== label.length - 1)) return false;
    }
  }
  return !/^[0-9]+$/.test(labels[labels.length - 1]!);
}

/** Decimal 1..65535, digits only, no sign, no leading zero. */
function parsePort(s: string): number | undefined {
  if (!/^[1-9][0-9]{0,4}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

/**
 * Parses an HBONE `:authority`. The result's IPv6 `host` is canonical (Rust `Display` form), so
 * `formatAuthority(parseAuthority(s))` is the text ztunnel would have sent for the same address.
 * @throws InvalidAuthorityError with a `reason`.
 */
export function parseAuthority(s: string): Authority {
  if (typeof s !== 'string') throw new InvalidAuthorityError('not a string', String(s));
  if (s.length === 0) throw new InvalidAuthorityError('empty', s);
  if (s.length > MAX_AUTHORITY_LENGTH) throw new InvalidAuthorityError('too long', s);
  if (s.includes('@')) throw new InvalidAuthorityError('userinfo is not allowed', s);
  let hostPart: string;
  let portPart: string;
  if (s.startsWith('[')) {
    const close = s.indexOf(']');
    if (close < 0) throw new InvalidAuthorityError('unterminated IPv6 bracket', s);
    hostPart = s.slice(1, close);
    if (s.charAt(close + 1) !== ':') throw new InvalidAuthorityError('missing port', s);
    portPart = s.slice(close + 2);
    if (hostPart.includes('%')) throw new InvalidAuthorityError('IPv6 zone IDs are not allowed', s);
    const groups = parseIpv6Groups(hostPart);
    if (groups === undefined) throw new InvalidAuthorityError('invalid IPv6 address', s);
    const port = parsePort(portPart);
    if (port === undefined) throw new InvalidAuthorityError('port must be decimal 1..65535', s);
    return Object.freeze({ kind: 'ipv6', host: formatIpv6Groups(groups), port });
  }
  const colon = s.lastIndexOf(':');
  if (colon < 0) throw new InvalidAuthorityError('missing port', s);
  hostPart = s.slice(0, colon);
  portPart = s.slice(colon + 1);
  if (hostPart.includes(':')) throw new InvalidAuthorityError('IPv6 address must be in brackets', s);
  if (hostPart.length === 0) throw new InvalidAuthorityError('empty host', s);
  const port = parsePort(portPart);
  if (port === undefined) throw new InvalidAuthorityError('port must be decimal 1..65535', s);
  if (parseIpv4Octets(hostPart) !== undefined) return Object.freeze({ kind: 'ipv4', host: hostPart, port });
  if (/^[0-9.]+$/.test(hostPart)) throw new InvalidAuthorityError('invalid IPv4 address', s);
  if (!isValidHostname(hostPart)) throw new InvalidAuthorityError('invalid hostname (RFC 1123)', s);
  return Object.freeze({ kind: 'hostname', host: hostPart, port });
}

/**
 * Writes an authority as ztunnel does (Rust `SocketAddr` Display for IPs, `host:port` for names).
 * The value is validated, and an IPv6 `host` in any accepted text form is canonicalised.
 * @throws InvalidAuthorityError when `a` could not have come from `parseAuthority`.
 */
export function formatAuthority(a: Authority): string {
  const { kind, host, port } = a;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InvalidAuthorityError('port must be an integer 1..65535', String(port));
  }
  switch (kind) {
    case 'ipv4':
      if (parseIpv4Octets(host) === undefined) throw new InvalidAuthorityError('invalid IPv4 address', host);
      return `${host}:${port}`;
    case 'ipv6': {
      if (host.includes('%')) throw new InvalidAuthorityError('IPv6 zone IDs are not allowed', host);
      const groups = parseIpv6Groups(host);
      if (groups === undefined) throw new InvalidAuthorityError('invalid IPv6 address', host);
      return `[${formatIpv6Groups(groups)}]:${port}`;
    }
    case 'hostname':
      if (!isValidHostname(host)) throw new InvalidAuthorityError('invalid hostname (RFC 1123)', host);
      return `${host}:${port}`;
    default:
      throw new InvalidAuthorityError('unknown kind', String(kind));
  }
}
