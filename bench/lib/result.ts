/**
 * The shape every hbone benchmark figure takes in `pnpm bench`'s JSON: a value, the baseline
 * measured in the same run, their ratio, the target (from issue 3, or ours when the issue gives
 * none) and whether it is met.
 */

/** What a target bounds: the ratio to the baseline, or the value itself. */
export interface Target {
  readonly of: 'ratio' | 'value';
  readonly op: '>=' | '<=';
  readonly value: number;
  /** 'issue-3' for the targets the project set; 'ours' where the issue names none. */
  readonly source: 'issue-3' | 'ours';
}

export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The same quantity for the baseline (raw TLS 1.3, single HBONE...), measured in this run. */
  readonly baseline: number;
  readonly baselineName: string;
  /**
   * value / baseline; for throughput measured in alternating rounds, the median of the
   * per-round ratios (a burst of load elsewhere skews one round, not the answer).
   */
  readonly ratio: number;
  readonly target: Target | null;
  readonly met: boolean;
  readonly details: Record<string, unknown>;
}

export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

export function result(r: {
  name: string;
  value: number;
  unit: string;
  baseline: number;
  baselineName: string;
  target: Target | null;
  details?: Record<string, unknown>;
  /** Overrides value / baseline (see `BenchResult.ratio`). */
  ratio?: number;
}): BenchResult {
  const ratio = r.ratio ?? (r.baseline === 0 ? Number.NaN : r.value / r.baseline);
  let met = true;
  if (r.target) {
    const x = r.target.of === 'ratio' ? ratio : r.value;
    met = r.target.op === '>=' ? x >= r.target.value : x <= r.target.value;
  }
  return {
    name: r.name,
    value: round(r.value),
    unit: r.unit,
    baseline: round(r.baseline),
    baselineName: r.baselineName,
    ratio: round(ratio),
    target: r.target,
    met,
    details: r.details ?? {},
  };
}

/** Median of the ratios of paired rounds: `values[i] / baselines[i]`. */
export function pairedRatio(values: readonly number[], baselines: readonly number[]): number {
  const rs = values.map((v, i) => v / baselines[i]!).sort((a, b) => a - b);
  const mid = rs.length >> 1;
  return rs.length % 2 === 1 ? rs[mid]! : (rs[mid - 1]! + rs[mid]!) / 2;
}

/** What a benchmark module's `run()` resolves to (the runner accepts any object). */
export interface ModuleReport {
  readonly results: BenchResult[];
  readonly [key: string]: unknown;
}

/** Progress for humans goes to stderr: stdout carries only the JSON document. */
export function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}
