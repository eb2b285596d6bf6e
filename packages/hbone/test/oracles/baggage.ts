/**
 * Naive oracle for parseBaggage: whole-member regexes over the W3C grammar, and Buffer's UTF-8
 * decoder for percent-decoding. Shares no code with src/baggage.ts.
 */
import type { BaggageEntry, BaggageProperty } from '../../src/baggage.js';

const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const VALUE = '[\\x21\\x23-\\x2b\\x2d-\\x3a\\x3c-\\x5b\\x5d-\\x7e]*';
const OWS = '[ \\t]*';
const MEMBER = new RegExp(
  `^(${TOKEN})${OWS}=${OWS}(${VALUE})((?:${OWS};${OWS}${TOKEN}(?:${OWS}=${OWS}${VALUE})?)*)$`,
);
const PROP = new RegExp(`^(${TOKEN})(?:${OWS}=${OWS}(${VALUE}))?$`);

function decode(v: string): string {
  const bytes: number[] = [];
  for (let i = 0; i < v.length; i++) {
    if (v[i] === '%' && /^[0-9a-fA-F]{2}$/.test(v.slice(i + 1, i + 3))) {
      bytes.push(Number.parseInt(v.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(v.charCodeAt(i));
  }
  return Buffer.from(bytes).toString('utf8');
}

export function oracleParseBaggage(
  header: string,
  maxMembers = 180,
  maxBytes = 8192,
): BaggageEntry[] | 'error' {
  if (/[^\x20-\x7e\t]/.test(header) || header.length > maxBytes) return 'error';
  const members = header
    .split(',')
    .map((m) => m.trim())
    .filter((m) => m !== '');
  if (members.length > maxMembers) return 'error';
  const out: BaggageEntry[] = [];
  for (const m of members) {
    const mm = MEMBER.exec(m);
    if (mm === null) return 'error';
    const properties: BaggageProperty[] = [];
    for (const p of mm[3]!.split(';').slice(1)) {
      const pm = PROP.exec(p.trim())!;
      properties.push(pm[2] === undefined ? { key: pm[1]! } : { key: pm[1]!, value: decode(pm[2]) });
    }
    out.push({ key: mm[1]!, value: decode(mm[2]!), properties });
  }
  return out;
}
