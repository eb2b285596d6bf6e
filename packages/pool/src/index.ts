// @hbone/pool: which HBONE connection carries each tunnel. Keys (pool-key.ts), limits and
// timers (config.ts), per-connection bookkeeping (pooled-connection.ts), the pool (pool.ts).
export * from './backoff.js';
export * from './config.js';
export * from './errors.js';
export * from './pool.js';
export * from './pool-key.js';
export * from './pooled-connection.js';
