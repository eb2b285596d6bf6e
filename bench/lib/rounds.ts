import { log } from './result.js';

/**
 * Runs every variant once per round, rotating which goes first, so drift and bursts of load
 * from elsewhere hit all of them. Returns each variant's figure per round.
 */
export async function alternate<K extends string>(
  label: string,
  rounds: number,
  variants: Record<K, () => Promise<number>>,
  unit = 'MB/s',
): Promise<Record<K, number[]>> {
  const names = Object.keys(variants) as K[];
  const out = Object.fromEntries(names.map((n) => [n, [] as number[]])) as Record<K, number[]>;
  for (let i = 0; i < rounds; i++) {
    const order = names.map((_, j) => names[(i + j) % names.length]!);
    for (const n of order) out[n].push(await variants[n]());
    log(`${label} round ${i + 1}: ${names.map((n) => `${n} ${out[n][i]!.toFixed(0)} ${unit}`).join(', ')}`);
  }
  return out;
}
