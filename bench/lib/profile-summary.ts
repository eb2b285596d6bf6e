/**
 * Summarises V8 `.cpuprofile` files (from `node --cpu-prof`, or children run with
 * `HBONE_BENCH_CPU_PROF=DIR`): self time per function and per file, heaviest first.
 *
 *   node --import tsx bench/lib/profile-summary.ts FILE.cpuprofile [--top N]
 *   node --import tsx bench/lib/profile-summary.ts FILE.cpuprofile --callers FUNCTION_NAME
 */
import { readFileSync } from 'node:fs';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly idleMs: number;
  readonly byFunction: Array<{ name: string; ms: number; pct: number }>;
  readonly byFile: Array<{ file: string; ms: number; pct: number }>;
}

function shortUrl(url: string): string {
  if (url === '') return '(native)';
  const i = url.indexOf('/packages/');
  if (i >= 0) return url.slice(i + 1);
  const j = url.indexOf('/bench/');
  if (j >= 0) return url.slice(j + 1);
  return url.replace(/^file:\/\//, '').replace(/^.*node_modules\//, 'node_modules/');
}

export function summarizeProfile(p: Profile, top = 25): ProfileSummary {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const fn = new Map<string, number>();
  const file = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n) continue;
    total += us;
    const name = n.callFrame.functionName || '(anonymous)';
    if (name === '(idle)') idle += us;
    const where = shortUrl(n.callFrame.url);
    const key = `${name} ${where}${n.callFrame.url ? `:${n.callFrame.lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + us);
    file.set(where, (file.get(where) ?? 0) + us);
  }
  const busy = total - idle || 1;
  const rows = <K extends string>(m: Map<string, number>, k: K) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([key, us]) => ({
        [k]: key,
        ms: Math.round(us / 100) / 10,
        pct: Math.round((us / busy) * 1000) / 10,
      }));
  return {
    totalMs: Math.round(total / 1000),
    idleMs: Math.round(idle / 1000),
    byFunction: rows(fn, 'name') as ProfileSummary['byFunction'],
    byFile: rows(file, 'file') as ProfileSummary['byFile'],
  };
}

/** Where the self time of functions whose name contains `name` comes from (caller chains). */
export function callersOf(
  p: Profile,
  name: string,
  depth = 4,
  top = 12,
): Array<{ chain: string; ms: number }> {
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const chains = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id);
    if (!n || !(n.callFrame.functionName || '(anonymous)').includes(name)) continue;
    const parts: string[] = [];
    let cur: number | undefined = id;
    for (let d = 0; d <= depth && cur !== undefined; d++) {
      const f = byId.get(cur)!.callFrame;
      parts.push(`${f.functionName || '(anon)'}@${shortUrl(f.url).split('/').pop()}:${f.lineNumber + 1}`);
      cur = parent.get(cur);
    }
    const key = parts.join(' < ');
    chains.set(key, (chains.get(key) ?? 0) + us);
  }
  return [...chains.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([chain, us]) => ({ chain, ms: Math.round(us / 100) / 10 }));
}

const isMain = process.argv[1]?.endsWith('profile-summary.ts');
if (isMain) process.stdout.on('error', () => process.exit(0));
if (isMain) {
  const args = process.argv.slice(2);
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 25;
  const files = args.filter((a) => a.endsWith('.cpuprofile'));
  const callersAt = args.indexOf('--callers');
  if (callersAt >= 0) {
    const name = args[callersAt + 1] ?? '';
    for (const f of files) {
      const p = JSON.parse(readFileSync(f, 'utf8')) as Profile;
      process.stdout.write(`# callers of ${name} in ${f}\n`);
      for (const r of callersOf(p, name, 5))
        process.stdout.write(`${String(r.ms).padStart(9)} ms  ${r.chain}\n`);
    }
    process.exit(0);
  }
  for (const f of files) {
    const s = summarizeProfile(JSON.parse(readFileSync(f, 'utf8')) as Profile, top);
    process.stdout.write(`# ${f}\ntotal ${s.totalMs} ms, idle ${s.idleMs} ms (pct = share of non-idle)\n`);
    process.stdout.write('## self time by function\n');
    for (const r of s.byFunction)
      process.stdout.write(`${String(r.ms).padStart(9)} ms ${String(r.pct).padStart(5)}%  ${r.name}\n`);
    process.stdout.write('## self time by file\n');
    for (const r of s.byFile)
      process.stdout.write(`${String(r.ms).padStart(9)} ms ${String(r.pct).padStart(5)}%  ${r.file}\n`);
  }
}
