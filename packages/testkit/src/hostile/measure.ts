/** Memory growth of this process between two points, in MiB (negative when memory was freed). */
export interface MemoryGrowth {
  readonly rssMiB: number;
  readonly heapUsedMiB: number;
  readonly arrayBuffersMiB: number;
  readonly externalMiB: number;
}

const MIB = 1024 * 1024;

/**
 * Starts a memory measurement: call the returned function later for the growth since now. It
 * runs the garbage collector first when the process exposes it (`--expose-gc`), so the numbers
 * are tighter there; without it they are upper bounds that include garbage not yet collected.
 */
export function memoryWatch(): () => MemoryGrowth {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const before = process.memoryUsage();
  return () => {
    gc?.();
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
