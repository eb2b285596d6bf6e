/**
 * The `forwarded` header (RFC 7239) of an HBONE CONNECT: who the original client was and, when
 * known, which service it meant to reach.
 *
 * ztunnel writes (src/proxy/outbound.rs `build_forwarded`) `for="<SocketAddr>"` or
 * `for="<SocketAddr>";host=<service hostname>`: `for` always quoted (even an IPv4 address, where
 * RFC 7239 section 4 would allow a token) and always carrying the port; `host` never quoted.
 * formatForwarded writes the same bytes for the same inputs; a `host` that is not an RFC 9110
 * token (e.g. `example.com:8080`) is quoted, as RFC 7239 section 4 requires.
 *
 * ztunnel reads only `host` (src/proxy.rs `parse_forwarded_host`: first `;`-separated part that
 * starts with `host=`, quotes stripped, case-sensitive, no list handling). parseForwarded is a
 * full, tolerant RFC 7239 parser: several elements separated by `,`, pairs by `;`, OWS around the
 * separators and `=`, token or quoted-string values with `\` escapes, case-insensitive parameter
 * names, empty elements and pairs (the grammar allows them), several header lines.
 */

import { canonicalizeIp } from './authority.js';
import { InvalidForwardedError } from './codec-errors.js';

export interface ForwardedPair {
  /** Lowercased (parameter names are case-insensitive, RFC 7239 section 4). */
  readonly name: string;
  /** The value with quoting and escapes removed. */
  readonly value: string;
}

export interface ForwardedElement {
  readonly for?: string;
  readonly by?: string;
  readonly host?: string;
  readonly proto?: string;
  /** Every pair of the element in order, the four above and extensions alike. */
  readonly pairs: readonly ForwardedPair[];
}

export interface ForwardedInput {
  /** `ip:port`, `[ipv6]:port`, `ip`, a bare IPv6 address, or any RFC 7239 section 6 node. */
  readonly for: string;
  /** The intended destination service's hostname (RFC 7239 section 5.3). */
  readonly host?: string;
}

export interface ForwardedLimits {
  /** Longest header accepted, in bytes. Default 8192. */
  readonly maxBytes?: number;
  /** Most elements accepted. Default 128. */
  readonly maxElements?: number;
}

export const DEFAULT_FORWARDED_MAX_BYTES = 8192;
export const DEFAULT_FORWARDED_MAX_ELEMENTS = 128;

/** An RFC 7239 section 6 node: where a `for` or `by` value points. */
export interface ForwardedNode {
  readonly kind: 'ipv4' | 'ipv6' | 'unknown' | 'obfuscated';
  /** Canonical IP text (IPv6 without brackets), `unknown`, or the `_identifier`. */
  readonly host: string;
  /** A numeric port, or an obfuscated `_port`; absent when the node has none. */
  readonly port?: number | string;
}

/** RFC 9110 section 5.6.2 `tchar`. */
function isTchar(c: number): boolean {
  if ((c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a)) return true;
  return "!#$%&'*+-.^_`|~".includes(String.fromCharCode(c));
}

function isToken(s: string): boolean {
  if (s.length === 0) return false;
  for (let i = 0; i < s.length; i++) if (!isTchar(s.charCodeAt(i))) return false;
  return true;
}

/** RFC 9110 section 5.6.4: quotes `s`, escaping `"` and `\`. */
function quote(s: string): string {
  return `"${s.replace(/["\\]/g, (m) => `\\${m}`)}"`;
}

const OBF = /^_[A-Za-z0-9._-]+$/;

/**
 * Parses an RFC 7239 section 6 node (`192.0.2.43`, `"[2001:db8:cafe::17]:4711"` once unquoted,
 * `unknown`, `_hidden`, `_hidden:_port`). IPs come back canonical.
 * @throws InvalidForwardedError.
 */
export function parseForwardedNode(value: string): ForwardedNode {
  let name: string;
  let portText: string | undefined;
  if (value.startsWith('[')) {
    const close = value.indexOf(']');
    if (close < 0) throw new InvalidForwardedError('unterminated IPv6 bracket in node', value);
    name = value.slice(0, close + 1);
    const rest = value.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':')) throw new InvalidForwardedError('junk after IPv6 node', value);
      portText = rest.slice(1);
    }
  } else {
    const colon = value.indexOf(':');
    name = colon < 0 ? value : value.slice(0, colon);
    portText = colon < 0 ? undefined : value.slice(colon + 1);
  }
  let port: number | string | undefined;
  if (portText !== undefined) {
    if (/^[0-9]{1,5}$/.test(portText) && Number(portText) <= 65535) port = Number(portText);
    else if (OBF.test(portText)) port = portText;
    else throw new InvalidForwardedError('invalid node port', value);
  }
  let node: ForwardedNode;
  if (name.startsWith('[')) {
    const inner = name.slice(1, -1);
    const ip = inner.includes('%') ? undefined : canonicalizeIp(inner);
    if (ip === undefined || ip.kind !== 'ipv6') throw new InvalidForwardedError('invalid IPv6 node', value);
    node = { kind: 'ipv6', host: ip.host };
  } else if (name.toLowerCase() === 'unknown') {
    // ABNF string literals are case-insensitive (RFC 5234 section 2.3).
    node = { kind: 'unknown', host: 'unknown' };
  } else if (OBF.test(name)) {
    node = { kind: 'obfuscated', host: name };
  } else {
    const ip = canonicalizeIp(name);
    if (ip === undefined || ip.kind !== 'ipv4') throw new InvalidForwardedError('invalid node name', value);
    node = { kind: 'ipv4', host: ip.host };
  }
  return Object.freeze(port === undefined ? node : { ...node, port });
}

/** Writes a node as RFC 7239 section 6 text (unquoted). */
export function formatForwardedNode(node: ForwardedNode): string {
  const name = node.kind === 'ipv6' ? `[${node.host}]` : node.host;
  return node.port === undefined ? name : `${name}:${node.port}`;
}

/**
 * Writes the `forwarded` header as ztunnel does: `for="<node>"`, then `;host=<host>` when a host
 * is given. IPs are written in canonical (Rust `SocketAddr` Display) form; a bare IPv6 address is
 * bracketed (RFC 7239 section 6).
 * @throws InvalidForwardedError for a `for` that is not a node or a `host` that is empty or has a
 *   character outside visible ASCII.
 */
export function formatForwarded(input: ForwardedInput): string {
  let forText = input.for;
  if (!forText.startsWith('[') && forText.indexOf(':') !== forText.lastIndexOf(':')) forText = `[${forText}]`;
  const node = parseForwardedNode(forText);
  let out = `for=${quote(formatForwardedNode(node))}`;
  if (input.host !== undefined) {
    const host = input.host;
    if (!/^[\x21-\x7e]+$/.test(host))
      throw new InvalidForwardedError('host must be non-empty visible ASCII', host);
    out += `;host=${isToken(host) ? host : quote(host)}`;
  }
  return out;
}

function isOws(c: number): boolean {
  return c === 0x20 || c === 0x09;
}

function positiveLimit(v: number | undefined, dflt: number, name: string): number {
  if (v === undefined) return dflt;
  if (!Number.isInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return v;
}

/**
 * Parses a `forwarded` header into its elements (RFC 7239 section 4). Element values are not
 * interpreted: use parseForwardedNode on `for` / `by`.
 * @throws InvalidForwardedError for the whole header: a character outside visible ASCII, SP and
 *   HTAB; a broken pair, token or quoted-string; a parameter repeated inside one element (section 4:
 *   "MUST NOT occur more than once"); more than `maxElements` elements or `maxBytes` bytes.
 */
export function parseForwarded(
  header: string | readonly string[],
  limits: ForwardedLimits = {},
): ForwardedElement[] {
  const maxBytes = positiveLimit(limits.maxBytes, DEFAULT_FORWARDED_MAX_BYTES, 'maxBytes');
  const maxElements = positiveLimit(limits.maxElements, DEFAULT_FORWARDED_MAX_ELEMENTS, 'maxElements');
  const s = typeof header === 'string' ? header : header.join(',');
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (!(c >= 0x20 && c <= 0x7e) && c !== 0x09) {
      throw new InvalidForwardedError(
        `character 0x${c.toString(16).padStart(2, '0')} outside visible ASCII`,
        s,
      );
    }
  }
  if (s.length > maxBytes) throw new InvalidForwardedError(`longer than ${maxBytes} bytes`, s);

  const elements: ForwardedElement[] = [];
  let pairs: ForwardedPair[] = [];
  let i = 0;
  const skipOws = () => {
    while (i < s.length && isOws(s.charCodeAt(i))) i++;
  };
  const finishElement = () => {
    if (pairs.length === 0) return; // an empty element: tolerated (RFC 9110 section 5.6.1)
    if (elements.length === maxElements)
      throw new InvalidForwardedError(`more than ${maxElements} elements`, s);
    const el: { -readonly [K in keyof ForwardedElement]: ForwardedElement[K] } = {
      pairs: Object.freeze(pairs),
    };
    for (const p of pairs) {
      if (p.name === 'for' || p.name === 'by' || p.name === 'host' || p.name === 'proto')
        el[p.name] = p.value;
    }
    elements.push(Object.freeze(el));
    pairs = [];
  };

  skipOws();
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c === 0x2c /* , */) {
      finishElement();
      i++;
      skipOws();
      continue;
    }
    if (c === 0x3b /* ; */) {
      i++;
      skipOws();
      continue;
    }
    // forwarded-pair = token "=" value
    const nameStart = i;
    while (i < s.length && isTchar(s.charCodeAt(i))) i++;
    if (i === nameStart) throw new InvalidForwardedError('expected a parameter name', s);
    const name = s.slice(nameStart, i).toLowerCase();
    skipOws();
    if (s.charCodeAt(i) !== 0x3d /* = */)
      throw new InvalidForwardedError('expected "=" after a parameter name', s);
    i++;
    skipOws();
    let value: string;
    if (s.charCodeAt(i) === 0x22 /* " */) {
      i++;
      value = '';
      for (;;) {
        if (i >= s.length) throw new InvalidForwardedError('unterminated quoted-string', s);
        const q = s.charCodeAt(i);
        if (q === 0x22) {
          i++;
          break;
        }
        if (q === 0x5c /* \ */) {
          if (i + 1 >= s.length) throw new InvalidForwardedError('unterminated quoted-pair', s);
          value += s.charAt(i + 1);
          i += 2;
          continue;
        }
        value += s.charAt(i);
        i++;
      }
    } else {
      const valueStart = i;
      while (i < s.length && isTchar(s.charCodeAt(i))) i++;
      if (i === valueStart) throw new InvalidForwardedError(`parameter "${name}" has no value`, s);
      value = s.slice(valueStart, i);
    }
    if (pairs.some((p) => p.name === name)) {
      throw new InvalidForwardedError(`parameter "${name}" repeated in one element`, s);
    }
    pairs.push(Object.freeze({ name, value }));
    skipOws();
    if (i < s.length && s.charCodeAt(i) !== 0x3b && s.charCodeAt(i) !== 0x2c) {
      throw new InvalidForwardedError('expected ";" or "," after a value', s);
    }
  }
  finishElement();
  return Object.freeze(elements) as ForwardedElement[];
}
