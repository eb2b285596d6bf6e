/**
 * Naive oracle for parseAuthority: Node's own IP checks (node:net), the WHATWG URL serializer for
 * IPv6 compression, and regexes. Deliberately shares no code with src/authority.ts.
 */
import { isIPv4, isIPv6 } from 'node:net';
import type { Authority } from '../../src/authority.js';

const LABEL = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function portOf(s: string): number | undefined {
  if (!/^[1-9][0-9]*$/.test(s) || s.length > 5) return undefined;
  const n = Number(s);
  return n <= 65535 ? n : undefined;
}

/** Rust prints IPv4-mapped addresses dotted; WHATWG prints them in hex. Everything else agrees. */
export function oracleCanonicalIpv6(host: string): string {
  const whatwg = new URL(`http://[${host}]/`).hostname.slice(1, -1);
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(whatwg);
  if (mapped === null) return whatwg;
  const a = Number.parseInt(mapped[1]!, 16);
  const b = Number.parseInt(mapped[2]!, 16);
  return `::ffff:${a >> 8}.${a & 255}.${b >> 8}.${b & 255}`;
}

export function oracleParseAuthority(s: string): Authority | 'error' {
  const v6 = /^\[([^\]]*)\]:([^:]*)$/.exec(s);
  if (v6 !== null) {
    const port = portOf(v6[2]!);
    if (port === undefined || v6[1]!.includes('%') || !isIPv6(v6[1]!)) return 'error';
    return { kind: 'ipv6', host: oracleCanonicalIpv6(v6[1]!), port };
  }
  const m = /^([^:[\]@]+):([^:]*)$/.exec(s);
  if (m === null) return 'error';
  const host = m[1]!;
  const port = portOf(m[2]!);
  if (port === undefined) return 'error';
  if (isIPv4(host)) return { kind: 'ipv4', host, port };
  const labels = host.split('.');
  if (host.length > 253 || !labels.every((l) => LABEL.test(l)) || /^[0-9]+$/.test(labels.at(-1)!))
    return 'error';
  return { kind: 'hostname', host, port };
}
