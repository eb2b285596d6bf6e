import type { ServerProcess } from './peer.js';

/**
 * CPU microseconds used by this process and by the server process(es) while `fn` runs
 * (`serverCpuUs` sums them; `perServerCpuUs` keeps them apart, in the order given).
 */
export async function measureCpu<T>(
  sp: ServerProcess | readonly ServerProcess[],
  fn: () => Promise<T>,
): Promise<{ value: T; clientCpuUs: number; serverCpuUs: number; perServerCpuUs: number[]; wallMs: number }> {
  const servers = Array.isArray(sp) ? (sp as readonly ServerProcess[]) : [sp as ServerProcess];
  const s0 = await Promise.all(servers.map((s) => s.cpuUs()));
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await fn();
  const wallMs = performance.now() - t0;
  const c1 = process.cpuUsage(c0);
  const s1 = await Promise.all(servers.map((s) => s.cpuUs()));
  const perServerCpuUs = s1.map((x, i) => x - s0[i]!);
  return {
    value,
    clientCpuUs: c1.user + c1.system,
    serverCpuUs: perServerCpuUs.reduce((a, b) => a + b, 0),
    perServerCpuUs,
    wallMs,
  };
}

/**
 * CPU cost per unit (byte, operation) on each side, per variant, over rounds. CPU time is far
 * less sensitive than wall time to other work on a shared machine, so it shows the cost of a
 * layer even when throughput figures are noisy. With client and server on separate cores, the
 * side with the higher cost per unit bounds the rate: `bound` is that figure.
 */
export class CpuLedger {
  readonly #rows = new Map<string, Array<{ client: number; server: number }>>();

  add(variant: string, units: number, clientCpuUs: number, serverCpuUs: number): void {
    let rows = this.#rows.get(variant);
    if (!rows) {
      rows = [];
      this.#rows.set(variant, rows);
    }
    rows.push({ client: (clientCpuUs * 1000) / units, server: (serverCpuUs * 1000) / units });
  }

  /** Median nanoseconds of CPU per unit on each side, and the larger of the two. */
  perUnit(variant: string): { clientNs: number; serverNs: number; boundNs: number } {
    const rows = this.#rows.get(variant) ?? [];
    const med = (xs: number[]): number => {
      const s = [...xs].sort((a, b) => a - b);
      return s.length === 0 ? Number.NaN : s[(s.length - 1) >> 1]!;
    };
    const r = (x: number): number => Math.round(x * 1000) / 1000;
    const clientNs = med(rows.map((x) => x.client));
    const serverNs = med(rows.map((x) => x.server));
    return { clientNs: r(clientNs), serverNs: r(serverNs), boundNs: r(Math.max(clientNs, serverNs)) };
  }

  /** All variants, for the JSON. */
  toJSON(): Record<string, { clientNs: number; serverNs: number; boundNs: number }> {
    return Object.fromEntries([...this.#rows.keys()].map((k) => [k, this.perUnit(k)]));
  }

  /** `baseline`'s bound over `variant`'s: the throughput ratio the CPU costs alone predict. */
  boundRatio(variant: string, baseline: string): number {
    return Math.round((this.perUnit(baseline).boundNs / this.perUnit(variant).boundNs) * 1000) / 1000;
  }
}
