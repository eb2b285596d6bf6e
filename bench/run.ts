/**
 * `pnpm bench`: runs the benchmark modules in order and prints ONE JSON document on stdout
 * (progress goes to stderr). Each module exports `run(): Promise<object>`; modules that may not
 * exist yet are skipped with a note. `--only NAME` (repeatable, or comma-separated) runs a subset.
 */
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { machineFacts } from './lib/machine.js';
import type { BenchResult } from './lib/result.js';
import { log } from './lib/result.js';

interface BenchModule {
  readonly name: string;
  /** Relative to this file, as an import specifier. */
  readonly path: string;
  readonly what: string;
  /** Owned by someone else and possibly not written yet: skip with a note when absent. */
  readonly optional?: boolean;
}

const MODULES: readonly BenchModule[] = [
  { name: 'hbone-bulk', path: './hbone-bulk.js', what: 'one tunnel, bulk one way, vs raw TLS' },
  {
    name: 'hbone-concurrent',
    path: './hbone-concurrent.js',
    what: '100 tunnels on one connection, aggregate, vs raw TLS',
  },
  {
    name: 'hbone-latency',
    path: './hbone-latency.js',
    what: '1-byte echo round trip vs raw TLS; tunnel open on a warm connection',
  },
  {
    name: 'hbone-handshake',
    path: './hbone-handshake.js',
    what: 'new connection + first tunnel per second vs raw mutual-TLS handshakes',
  },
  {
    name: 'hbone-memory',
    path: './hbone-memory.js',
    what: 'memory per idle tunnel at 10,000 tunnels over 100 connections',
  },
  { name: 'hbone-double', path: './hbone-double.js', what: 'double HBONE bulk vs single HBONE' },
  {
    name: 'pool-open',
    path: './pool-open.js',
    what: '10,000 tunnels over 50 keys through one pool: dials, open latency, tunnels/s',
  },
  {
    name: 'mesh-path',
    path: './mesh-path.js',
    what: 'full mesh path (double HBONE via gateway) vs direct TCP and a single HBONE hop',
  },
  {
    name: 'spiffe-handshake',
    path: './spiffe-handshake.js',
    what: 'SPIFFE verification cost in the handshake',
    optional: true,
  },
];

function parseArgs(argv: readonly string[]): { only: Set<string> | undefined } {
  const only = new Set<string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--only') {
      const v = argv[++i];
      if (!v) throw new Error('--only needs a benchmark name');
      for (const n of v.split(',')) only.add(n.trim());
    } else if (a.startsWith('--only=')) {
      for (const n of a.slice(7).split(',')) only.add(n.trim());
    } else if (a === '--help' || a === '-h') {
      process.stderr.write(
        `usage: pnpm bench [--only NAME[,NAME]]\nbenchmarks:\n${MODULES.map((m) => `  ${m.name.padEnd(18)} ${m.what}`).join('\n')}\n`,
      );
      process.exit(0);
    } else {
      throw new Error(`unknown argument ${a} (try --help)`);
    }
  }
  for (const n of only) {
    if (!MODULES.some((m) => m.name === n)) {
      throw new Error(`unknown benchmark ${n}; known: ${MODULES.map((m) => m.name).join(', ')}`);
    }
  }
  return { only: only.size > 0 ? only : undefined };
}

function sourceFile(m: BenchModule): string {
  return fileURLToPath(new URL(m.path.replace(/\.js$/, '.ts'), import.meta.url));
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function isResult(x: unknown): x is BenchResult {
  return typeof x === 'object' && x !== null && 'name' in x && 'met' in x && 'ratio' in x;
}

async function main(): Promise<number> {
  const { only } = parseArgs(process.argv.slice(2));
  const started = new Date();
  const machine = machineFacts();
  const t0 = performance.now();
  const benchmarks: Record<string, unknown> = {};
  const summary: Array<
    Pick<BenchResult, 'name' | 'value' | 'unit' | 'baseline' | 'ratio' | 'target' | 'met'>
  > = [];
  let failed = false;
  for (const m of MODULES) {
    if (only && !only.has(m.name)) continue;
    if (m.optional && !existsSync(sourceFile(m))) {
      benchmarks[m.name] = { skipped: `bench/${m.path.slice(2).replace(/\.js$/, '.ts')} is not present` };
      log(`${m.name}: skipped (module not present)`);
      continue;
    }
    log(`${m.name}: ${m.what}`);
    const mt0 = performance.now();
    const loadBefore = loadavg()[0]!;
    try {
      const spec: string = m.path;
      const mod = (await import(spec)) as { run?: () => Promise<object> };
      if (typeof mod.run !== 'function') throw new Error(`${m.path} exports no run()`);
      const report = await mod.run();
      const seconds = Math.round((performance.now() - mt0) / 100) / 10;
      // Other work on the machine skews figures: the 1-minute load average says how busy it was.
      const loadAverage1m = { before: round2(loadBefore), after: round2(loadavg()[0]!) };
      benchmarks[m.name] = { ...report, seconds, loadAverage1m };
      const results = (report as { results?: unknown }).results;
      if (Array.isArray(results)) {
        for (const r of results.filter(isResult)) {
          const { name, value, unit, baseline, ratio, target, met } = r;
          summary.push({ name, value, unit, baseline, ratio, target, met });
          log(
            `  ${name}: ${value} ${unit} (baseline ${baseline}, ratio ${ratio}) ${met ? 'met' : 'NOT met'}`,
          );
        }
      }
      log(`${m.name}: done in ${seconds} s`);
    } catch (err) {
      failed = true;
      benchmarks[m.name] = { error: String((err as Error)?.stack ?? err) };
      log(`${m.name}: FAILED ${String((err as Error)?.message ?? err)}`);
    }
  }
  const doc = {
    schema: 'hbone-bench/1',
    startedAt: started.toISOString(),
    seconds: Math.round((performance.now() - t0) / 100) / 10,
    machine,
    summary,
    targetsMet: summary.filter((r) => r.target !== null && r.met).map((r) => r.name),
    targetsNotMet: summary.filter((r) => r.target !== null && !r.met).map((r) => r.name),
    benchmarks,
  };
  process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${String((err as Error)?.message ?? err)}\n`);
    process.exitCode = 2;
  },
);
