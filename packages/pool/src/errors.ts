/**
 * The pool's own failures. Everything else a pooled open can fail with is an `@hbone/hbone`
 * error (dial, TLS, identity, CONNECT status, reset): the same types as a direct tunnel.
 */
export type PoolErrorCode =
  | 'ERR_POOL_CLOSED'
  | 'ERR_POOL_QUEUE_FULL'
  | 'ERR_POOL_NO_STREAM_CAPACITY'
  | 'ERR_POOL_INVALID_CONFIG'
  | 'ERR_POOL_ABORTED';

export abstract class PoolError extends Error {
  abstract readonly code: PoolErrorCode;
  /** ztunnel response flag for access logs and metrics. */
  readonly responseFlag = 'CONNECT' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** `open()` after `close()`/`destroy()`, or an open still waiting when the pool closed. */
export class PoolClosedError extends PoolError {
  readonly code = 'ERR_POOL_CLOSED' as const;
}

/** Every connection of the key is full, the per-key cap is reached and the wait queue is full. */
export class PoolQueueFullError extends PoolError {
  readonly code = 'ERR_POOL_QUEUE_FULL' as const;
}

/** The peer advertises SETTINGS_MAX_CONCURRENT_STREAMS = 0: it takes no tunnels at all. */
export class NoStreamCapacityError extends PoolError {
  readonly code = 'ERR_POOL_NO_STREAM_CAPACITY' as const;
}

/** A configuration value failed `verifyConfig`. */
export class InvalidPoolConfigError extends PoolError {
  readonly code = 'ERR_POOL_INVALID_CONFIG' as const;
}

/** The caller's AbortSignal fired while the open waited. */
export class PoolAbortedError extends PoolError {
  readonly code = 'ERR_POOL_ABORTED' as const;
}
