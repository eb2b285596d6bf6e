/**
 * Delay before the next dial to a key after `failures` consecutive failures: none after the
 * first (a single failure may be a transient race, e.g. a pod restarting), then exponential
 * from `initialMs`, capped at `maxMs`, with `jitter` of it removed at random so that many
 * proxies do not redial a recovering peer in lockstep.
 */
export function backoffDelayMs(
  failures: number,
  cfg: { backoffInitialMs: number; backoffMaxMs: number; backoffJitter: number },
  random: () => number = Math.random,
): number {
  if (failures <= 1) return 0;
  const exp = Math.min(cfg.backoffMaxMs, cfg.backoffInitialMs * 2 ** Math.min(30, failures - 2));
  return Math.round(exp * (1 - cfg.backoffJitter * random()));
}
