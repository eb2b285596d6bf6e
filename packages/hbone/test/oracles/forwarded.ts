/**
 * Naive oracle for parseForwarded: one regex validates the whole header (RFC 7239 section 4 with
 * OWS tolerance), a second extracts pairs and element separators. Shares no code with the parser.
 */
import type { ForwardedElement, ForwardedPair } from '../../src/forwarded.js';

const TCHAR = "[!#$%&'*+.^_`|~0-9A-Za-z-]";
const QS = '"(?:[^"\\\\]|\\\\[\\t\\x20-\\x7e])*"';
const PAIR = `${TCHAR}+[ \\t]*=[ \\t]*(?:${TCHAR}+|${QS})`;
const WHOLE = new RegExp(`^[ \\t]*(?:${PAIR})?(?:[ \\t]*[;,][ \\t]*(?:${PAIR})?)*[ \\t]*$`);
const SCAN = new RegExp(
  `(${TCHAR}+)[ \\t]*=[ \\t]*(?:(${TCHAR}+)|"((?:[^"\\\\]|\\\\[\\t\\x20-\\x7e])*)")|(,)`,
  'g',
);

export function oracleParseForwarded(
  header: string,
  maxBytes = 8192,
  maxElements = 128,
): ForwardedElement[] | 'error' {
  if (/[^\x20-\x7e\t]/.test(header) || header.length > maxBytes || !WHOLE.test(header)) return 'error';
  const groups: ForwardedPair[][] = [[]];
  for (const m of header.matchAll(SCAN)) {
    if (m[4] === ',') groups.push([]);
    else
      groups.at(-1)!.push({ name: m[1]!.toLowerCase(), value: m[2] ?? m[3]!.replace(/\\([\s\S])/g, '$1') });
  }
  const elements: ForwardedElement[] = [];
  for (const pairs of groups.filter((g) => g.length > 0)) {
    const names = pairs.map((p) => p.name);
    if (new Set(names).size !== names.length) return 'error';
    const el: Record<string, unknown> = { pairs };
    for (const k of ['for', 'by', 'host', 'proto']) {
      const p = pairs.find((x) => x.name === k);
      if (p !== undefined) el[k] = p.value;
    }
    elements.push(el as unknown as ForwardedElement);
  }
  return elements.length > maxElements ? 'error' : elements;
}
