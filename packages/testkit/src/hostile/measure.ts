import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Memory growth of this process between two points, in MiB (negative when memory was freed). */
export interface MemoryGrowth {
  readonly rssMiB: number;
  readonly heapUsedMiB: number;
  readonly arrayBuffersMiB: number;
  readonly externalMiB: number;
}

const MIB = 1024 * 1024;

let collector: (() => void) | null | undefined;

/**
 * A full garbage collection, so that memory figures count what is retained rather than garbage
 * not yet collected. Uses `globalThis.gc` under `--expose-gc`, else enables the flag at run time
 * and takes `gc` from a fresh context (a long-standing V8 idiom); a no-op if neither works.
 */
export function collectGarbage(): void {
  if (collector === undefined) {
    collector = (globalThis as { gc?: () => void }).gc ?? null;
    if (collector === null) {
      try {
        setFlagsFromString('--expose-gc');
        collector = runInNewContext('gc') as () => void;
      } catch {
        collector = null;
      }
    }
  }
  collector?.();
}

/**
 * Starts a memory measurement: call the returned function later for the growth since now. Both
 * ends run a full garbage collection first (see `collectGarbage`), so the figures are what the
 * process retains.
 */
export function memoryWatch(): () => MemoryGrowth {
  collectGarbage();
  const before = process.memoryUsage();
  return () => {
    collectGarbage();
    const after = process.memoryUsage();
    const round = (n: number): number => Math.round((n / MIB) * 10) / 10;
    return {
      rssMiB: round(after.rss - before.rss),
      heapUsedMiB: round(after.heapUsed - before.heapUsed),
      arrayBuffersMiB: round(after.arrayBuffers - before.arrayBuffers),
      externalMiB: round(after.external - before.external),
    };
  };
}

/**
 * Prints what an attack did (times, counts, memory) when `HOSTILE_REPORT` is set in the
 * environment, so a run can be summarised without making the tests noisy.
 */
export function reportAttack(name: string, facts: Record<string, unknown>): void {
  if (!process.env.HOSTILE_REPORT) return;
  process.stdout.write(`[hostile] ${name}: ${JSON.stringify(facts)}\n`);
}
