import type { HboneClientSession } from '@hbone/hbone';

/** Why a connection stopped taking new tunnels (for stats and the 'evict' event). */
export type DrainReason =
  | 'idle'
  | 'lifetime'
  | 'lru'
  | 'rotation'
  | 'goaway'
  | 'unhealthy'
  | 'closed'
  | 'pool-close';

/**
 * One HBONE connection in the pool and the pool's bookkeeping for it. The session counts its
 * own streams (synchronously on `open()`), so a slot is taken the moment a tunnel is opened.
 */
export class PooledConnection {
  readonly session: HboneClientSession;
  readonly keyId: string;
  readonly createdAt: number;
  lastUsedAt: number;
  /** Set once the connection takes no new tunnels; it closes when its last tunnel ends. */
  drainReason: DrainReason | undefined;
  /** The peer refused a stream (REFUSED_STREAM): treat as full until one of its streams ends. */
  refusedStream = false;
  #cap: number;
  #idleTimer: NodeJS.Timeout | undefined;
  #lifetimeTimer: NodeJS.Timeout | undefined;

  constructor(session: HboneClientSession, keyId: string, maxStreams: number, now: number) {
    this.session = session;
    this.keyId = keyId;
    this.createdAt = now;
    this.lastUsedAt = now;
    this.#cap = maxStreams;
  }

  /** min(our per-connection cap, the peer's SETTINGS_MAX_CONCURRENT_STREAMS). */
  get capacity(): number {
    return Math.min(this.#cap, this.session.maxStreams);
  }

  get active(): number {
    return this.session.activeStreams;
  }

  /** True when a new tunnel may go on this connection now. */
  get hasRoom(): boolean {
    return (
      this.drainReason === undefined &&
      !this.refusedStream &&
      this.session.state === 'open' &&
      this.session.activeStreams < this.capacity
    );
  }

  setIdleTimer(ms: number, onIdle: () => void): void {
    this.clearIdleTimer();
    this.#idleTimer = setTimeout(onIdle, ms);
    this.#idleTimer.unref();
  }

  clearIdleTimer(): void {
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  setLifetimeTimer(ms: number, onExpire: () => void): void {
    this.#lifetimeTimer = setTimeout(onExpire, ms);
    this.#lifetimeTimer.unref();
  }

  /** Clears every timer; the single teardown path for this connection's timers. */
  clearTimers(): void {
    this.clearIdleTimer();
    if (this.#lifetimeTimer !== undefined) clearTimeout(this.#lifetimeTimer);
    this.#lifetimeTimer = undefined;
  }
}
