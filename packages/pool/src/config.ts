import { InvalidPoolConfigError } from './errors.js';

/** Pool limits and timers. Units are in the names; sources in the comments. */
export interface PoolConfig {
  /** Tunnels per connection at most; the peer's MAX_CONCURRENT_STREAMS also applies. ztunnel `src/proxy/pool.rs`: 100. */
  maxStreamsPerConnection: number;
  /** Connections per key at most; beyond it opens wait in the queue. */
  maxConnectionsPerKey: number;
  /** Opens waiting per key at most; beyond it `PoolQueueFullError`. */
  maxQueuedPerKey: number;
  /** Live (non-draining) connections across all keys; the least recently used drains first. */
  maxConnections: number;
  /** Whole-open deadline: queue, dial and CONNECT response. */
  openTimeoutMs: number;
  /** A connection with no tunnels for this long is closed. ztunnel: 5 min; ~15 s where pod IPs are recycled. */
  idleTimeoutMs: number;
  /** A connection takes no new tunnels after this age (0 = no limit), spread by `lifetimeJitter`. */
  maxLifetimeMs: number;
  /** Fraction of `maxLifetimeMs` removed at random per connection, so they do not all expire at once. */
  lifetimeJitter: number;
  /** `close()` waits this long for tunnels to finish, then destroys what is left. ztunnel drain: 5 s. */
  closeDeadlineMs: number;
  /** Backoff after repeated dial failures to one key: first delay, cap, and random spread. */
  backoffInitialMs: number;
  backoffMaxMs: number;
  backoffJitter: number;
}

export const defaultConfig: Readonly<PoolConfig> = Object.freeze({
  maxStreamsPerConnection: 100,
  maxConnectionsPerKey: 16,
  maxQueuedPerKey: 1024,
  maxConnections: 10_000,
  openTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  maxLifetimeMs: 0,
  lifetimeJitter: 0.1,
  closeDeadlineMs: 5_000,
  backoffInitialMs: 100,
  backoffMaxMs: 5_000,
  backoffJitter: 0.5,
});

function check(ok: boolean, message: string): void {
  if (!ok) throw new InvalidPoolConfigError(message);
}

const isInt = (v: unknown, min: number): boolean => Number.isInteger(v) && (v as number) >= min;
const isNum = (v: unknown, min: number, max = Number.POSITIVE_INFINITY): boolean =>
  typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max;

/** Merges with `defaultConfig` and validates once, at construction (yamux's verifyConfig). */
export function verifyConfig(partial: Partial<PoolConfig> = {}): Readonly<PoolConfig> {
  for (const k of Object.keys(partial)) {
    check(k in defaultConfig, `unknown pool option "${k}"`);
  }
  const c: PoolConfig = { ...defaultConfig, ...partial };
  check(isInt(c.maxStreamsPerConnection, 1), 'maxStreamsPerConnection must be an integer >= 1');
  check(isInt(c.maxConnectionsPerKey, 1), 'maxConnectionsPerKey must be an integer >= 1');
  check(isInt(c.maxQueuedPerKey, 0), 'maxQueuedPerKey must be an integer >= 0');
  check(isInt(c.maxConnections, 1), 'maxConnections must be an integer >= 1');
  check(isNum(c.openTimeoutMs, 1), 'openTimeoutMs must be a number >= 1');
  check(isNum(c.idleTimeoutMs, 0), 'idleTimeoutMs must be a number >= 0 (0 closes idle connections at once)');
  check(isNum(c.maxLifetimeMs, 0), 'maxLifetimeMs must be a number >= 0 (0 = no limit)');
  check(isNum(c.lifetimeJitter, 0, 1), 'lifetimeJitter must be within [0, 1]');
  check(isNum(c.closeDeadlineMs, 0), 'closeDeadlineMs must be a number >= 0');
  check(isNum(c.backoffInitialMs, 0), 'backoffInitialMs must be a number >= 0');
  check(isNum(c.backoffMaxMs, c.backoffInitialMs), 'backoffMaxMs must be >= backoffInitialMs');
  check(isNum(c.backoffJitter, 0, 1), 'backoffJitter must be within [0, 1]');
  return Object.freeze(c);
}
