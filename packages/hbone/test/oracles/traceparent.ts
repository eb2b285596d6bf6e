/** Naive oracle for parseTraceparent: one regex and the W3C section 3.2 rules, nothing shared. */
import type { Traceparent } from '../../src/traceparent.js';

export function oracleParseTraceparent(s: string): Traceparent | 'error' {
  if (s.length > 512) return 'error';
  const m = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(.*)$/s.exec(s);
  if (m === null) return 'error';
  const [, v, traceId, parentId, f, rest] = m as unknown as [string, string, string, string, string, string];
  if (v === 'ff' || /^0+$/.test(traceId) || /^0+$/.test(parentId)) return 'error';
  if (v === '00' ? rest !== '' : rest !== '' && !rest.startsWith('-')) return 'error';
  return { version: Number.parseInt(v, 16), traceId, parentId, flags: Number.parseInt(f, 16) };
}
