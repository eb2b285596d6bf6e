import { EventEmitter } from 'node:events';
import {
  connect,
  H2_CODES,
  type HboneClientOptions,
  type HboneClientSession,
  HboneTimeoutError,
  type HboneTunnel,
  SessionClosedError,
  StreamResetError,
  type TunnelRequest,
} from '@hbone/hbone';
import type { SpiffeId, X509BundleSource, X509SvidSource } from '@hbone/spiffe';
import { backoffDelayMs } from './backoff.js';
import { type PoolConfig, verifyConfig } from './config.js';
import {
  InvalidPoolConfigError,
  NoStreamCapacityError,
  PoolAbortedError,
  PoolClosedError,
  PoolQueueFullError,
} from './errors.js';
import { type PoolKey, type ResolvedPoolKey, resolvePoolKey } from './pool-key.js';
import { type DrainReason, PooledConnection } from './pooled-connection.js';

/** The credentials a source identity dials with. */
export interface Credentials {
  svidSource: X509SvidSource;
  bundleSource: X509BundleSource;
}

export interface HbonePoolOptions {
  /** Limits and timers; see `defaultConfig`. Validated once, here. */
  config?: Partial<PoolConfig>;
  /** Our credentials per source identity (a node proxy acts as many workloads). */
  credentials?: (source: SpiffeId) => Credentials;
  /** Extra client options for the default dialer (timeouts, PING, SNI). */
  clientOptions?: Omit<
    Partial<HboneClientOptions>,
    'svidSource' | 'bundleSource' | 'expectedIdentities' | 'authorizer' | 'localAddress'
  >;
  /**
   * Replaces the default dialer (`connect()` with `credentials(key.source)`, expecting
   * `key.destinations`, bound to `key.sourceIp`). Give this or `credentials`.
   */
  dial?: (key: ResolvedPoolKey) => Promise<HboneClientSession>;
  /**
   * The credentials generation of a key: when it changes (rotation), new tunnels go on new
   * connections and the old ones drain. Default: the sources' generations, when `credentials`
   * is given; otherwise 0.
   */
  generation?: (key: ResolvedPoolKey) => string | number;
}

export interface PoolOpenOptions {
  /** Overrides `openTimeoutMs` for this open: queue + dial + CONNECT response. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface ConnectionStats {
  readonly active: number;
  readonly capacity: number;
  readonly draining: DrainReason | undefined;
  readonly ageMs: number;
}

export interface KeyStats {
  readonly key: string;
  readonly connections: readonly ConnectionStats[];
  readonly queued: number;
  readonly dialing: boolean;
  readonly consecutiveFailures: number;
}

export interface PoolStats {
  readonly keys: number;
  readonly connections: number;
  readonly liveConnections: number;
  readonly activeTunnels: number;
  readonly queued: number;
  readonly opens: number;
  readonly reuses: number;
  readonly dials: number;
  readonly dialFailures: number;
  readonly evictions: Readonly<Record<'idle' | 'lifetime' | 'lru' | 'rotation', number>>;
  readonly perKey: readonly KeyStats[];
}

interface Waiter {
  /** Takes a connection with room; must open the stream synchronously. */
  claim(conn: PooledConnection): void;
  fail(err: Error): void;
  settled: boolean;
}

interface KeyState {
  readonly id: string;
  readonly key: ResolvedPoolKey;
  readonly conns: PooledConnection[];
  readonly waiters: Waiter[];
  dialing: boolean;
  failures: number;
  nextDialAt: number;
  lastError: Error | undefined;
  /** Drops the failure record after a quiet period; cleared on success and on shutdown. */
  forgetTimer: NodeJS.Timeout | undefined;
}

function isRetryable(err: unknown): 'refused' | 'gone' | undefined {
  if (err instanceof StreamResetError && err.h2Code === H2_CODES.REFUSED_STREAM) return 'refused';
  if (err instanceof SessionClosedError) return 'gone';
  return undefined;
}

/**
 * Identity-keyed HBONE connection pool (ztunnel `src/proxy/pool.rs` is the model):
 * - one dial per key at a time; every open waiting on a failed dial gets its error at once;
 * - at most min(maxStreamsPerConnection, the peer's MAX_CONCURRENT_STREAMS) tunnels per
 *   connection, new connections up to `maxConnectionsPerKey`, then a bounded queue;
 * - connections that got GOAWAY, failed a PING or errored take no new tunnels; a tunnel
 *   refused with REFUSED_STREAM (or caught by a dying connection) is retried once elsewhere;
 * - idle, lifetime and total-count eviction; `close()` drains, `destroy()` is immediate.
 *
 * Events: 'dial' (key), 'dialFailure' (key, error), 'connect' (key, session),
 * 'evict' (key, reason), 'connectionClose' (key, session).
 */
export class HbonePool extends EventEmitter {
  readonly config: Readonly<PoolConfig>;
  readonly #dial: (key: ResolvedPoolKey) => Promise<HboneClientSession>;
  readonly #generation: (key: ResolvedPoolKey) => string | number;
  readonly #keys = new Map<string, KeyState>();
  /** resolved key id -> key-state id of its current credentials generation. */
  readonly #current = new Map<string, string>();
  readonly #all = new Set<PooledConnection>();
  readonly #dialsInFlight = new Set<Promise<unknown>>();
  #closed: Promise<void> | undefined;
  #counters = { opens: 0, reuses: 0, dials: 0, dialFailures: 0 };
  #evictions = { idle: 0, lifetime: 0, lru: 0, rotation: 0 };

  constructor(options: HbonePoolOptions) {
    super();
    this.config = verifyConfig(options?.config);
    if (!options?.dial && !options?.credentials) {
      throw new InvalidPoolConfigError('give `credentials` (for the default dialer) or `dial`');
    }
    const credentials = options.credentials;
    this.#dial =
      options.dial ??
      ((key) => {
        const creds = credentials!(key.source);
        return connect(key.address, {
          ...options.clientOptions,
          ...creds,
          expectedIdentities: key.destinations,
          ...(key.sourceIp ? { localAddress: key.sourceIp } : {}),
        });
      });
    this.#generation =
      options.generation ??
      (credentials
        ? (key) => {
            const c = credentials(key.source);
            return `${c.svidSource.generation}.${c.bundleSource.generation}`;
          }
        : () => 0);
  }

  /**
   * Opens a tunnel to `key` carrying `request`. Resolves with the same `HboneTunnel` as a
   * direct `session.open()`, and rejects with the same errors, plus the pool's own
   * (PoolClosedError, PoolQueueFullError, NoStreamCapacityError, PoolAbortedError) and
   * HboneTimeoutError when the whole wait exceeds `openTimeoutMs`.
   */
  open(key: PoolKey, request: TunnelRequest, opts: PoolOpenOptions = {}): Promise<HboneTunnel> {
    if (this.#closed) return Promise.reject(new PoolClosedError('the pool is closed'));
    let resolved: ResolvedPoolKey;
    try {
      resolved = resolvePoolKey(key);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = opts.timeoutMs ?? this.config.openTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    this.#counters.opens++;
    return new Promise<HboneTunnel>((resolve, reject) => {
      const attempt = (retried: boolean): void => {
        // The key's state is looked up per attempt: between a first attempt and its retry the
        // old state may have been forgotten, and enqueueing on that orphan would let a second
        // dial run beside the one for the key's current state (found by pool-model.test.ts).
        this.#enqueue(
          this.#keyState(resolved),
          deadline,
          timeoutMs,
          opts.signal,
          (conn) => {
            if (conn.session.totalStreams > 0) this.#counters.reuses++;
            conn.clearIdleTimer();
            conn.lastUsedAt = Date.now();
            conn.session
              .open(request, { timeoutMs: Math.max(1, deadline - Date.now()), signal: opts.signal })
              .then(resolve, (err: unknown) => {
                const why = isRetryable(err);
                if (why && !retried && !this.#closed && Date.now() < deadline) {
                  if (why === 'refused') conn.refusedStream = true;
                  else this.#drain(conn, 'closed');
                  attempt(true);
                } else {
                  reject(err);
                }
              });
          },
          reject,
        );
      };
      attempt(false);
    });
  }

  /** Counters and the per-key picture, for metrics. */
  stats(): PoolStats {
    const now = Date.now();
    let live = 0;
    let active = 0;
    let queued = 0;
    const perKey: KeyStats[] = [];
    for (const ks of this.#keys.values()) {
      queued += ks.waiters.length;
      perKey.push({
        key: `${ks.key.source} -> [${ks.key.destinations.join(', ')}] @ ${ks.key.address.host}:${ks.key.address.port}`,
        connections: ks.conns.map((c) => ({
          active: c.active,
          capacity: c.capacity,
          draining: c.drainReason,
          ageMs: now - c.createdAt,
        })),
        queued: ks.waiters.length,
        dialing: ks.dialing,
        consecutiveFailures: ks.failures,
      });
    }
    for (const c of this.#all) {
      if (c.drainReason === undefined) live++;
      active += c.active;
    }
    return {
      keys: this.#keys.size,
      connections: this.#all.size,
      liveConnections: live,
      activeTunnels: active,
      queued,
      ...this.#counters,
      evictions: { ...this.#evictions },
      perKey,
    };
  }

  /** Graceful: no new opens; waiting opens fail; connections close once their tunnels end. */
  close(): Promise<void> {
    this.#closed ??= this.#shutdown(false);
    return this.#closed;
  }

  /** Immediate: every connection destroyed, every tunnel fails. Idempotent. */
  destroy(): Promise<void> {
    if (this.#closed) {
      for (const c of this.#all) c.session.destroy();
      return this.#closed;
    }
    this.#closed = this.#shutdown(true);
    return this.#closed;
  }

  async #shutdown(immediate: boolean): Promise<void> {
    const err = new PoolClosedError('the pool was closed while this open waited');
    for (const ks of this.#keys.values()) {
      this.#failWaiters(ks, err);
      if (ks.forgetTimer !== undefined) clearTimeout(ks.forgetTimer);
      ks.forgetTimer = undefined;
    }
    await Promise.allSettled([...this.#dialsInFlight]);
    const closes: Array<Promise<void>> = [];
    for (const c of [...this.#all]) {
      closes.push(
        new Promise<void>((r) => (c.session.state === 'closed' ? r() : c.session.once('close', () => r()))),
      );
      c.clearTimers();
      if (immediate) c.session.destroy();
      else this.#drain(c, 'pool-close');
    }
    if (immediate) {
      await Promise.all(closes);
      return;
    }
    // A drain is bounded: tunnels still open at the deadline are cut.
    const deadline = setTimeout(() => {
      for (const c of this.#all) c.session.destroy();
    }, this.config.closeDeadlineMs);
    deadline.unref();
    await Promise.all(closes);
    clearTimeout(deadline);
  }

  #keyState(key: ResolvedPoolKey): KeyState {
    const gen = this.#generation(key);
    const id = `${key.id}#${gen}`;
    const previous = this.#current.get(key.id);
    if (previous !== undefined && previous !== id) {
      // Rotation: the old generation's connections finish their tunnels and close.
      const old = this.#keys.get(previous);
      if (old) for (const c of old.conns) this.#drain(c, 'rotation');
    }
    this.#current.set(key.id, id);
    let ks = this.#keys.get(id);
    if (!ks) {
      ks = {
        id,
        key,
        conns: [],
        waiters: [],
        dialing: false,
        failures: 0,
        nextDialAt: 0,
        lastError: undefined,
        forgetTimer: undefined,
      };
      this.#keys.set(id, ks);
    }
    return ks;
  }

  #enqueue(
    ks: KeyState,
    deadline: number,
    timeoutMs: number,
    signal: AbortSignal | undefined,
    claim: (conn: PooledConnection) => void,
    fail: (err: Error) => void,
  ): void {
    if (signal?.aborted) {
      fail(new PoolAbortedError('the open was aborted'));
      return;
    }
    // Fast path: a connection with room, no queue ahead of us.
    if (ks.waiters.length === 0) {
      const conn = this.#pick(ks);
      if (conn) {
        claim(conn);
        return;
      }
    }
    // Opens waiting for a dial in flight are not "queued behind full connections": the new
    // connection will carry up to maxStreamsPerConnection of them.
    const dialRoom = ks.dialing ? this.config.maxStreamsPerConnection : 0;
    if (ks.waiters.length >= this.config.maxQueuedPerKey + dialRoom) {
      fail(new PoolQueueFullError(`${ks.waiters.length} opens already wait for this key`));
      return;
    }
    let timer: NodeJS.Timeout | undefined;
    const onAbort = (): void => done(new PoolAbortedError('the open was aborted'));
    const cleanup = (): void => {
      waiter.settled = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      const i = ks.waiters.indexOf(waiter);
      if (i !== -1) ks.waiters.splice(i, 1);
    };
    const done = (err: Error): void => {
      if (waiter.settled) return;
      cleanup();
      fail(err);
      this.#maybeForget(ks);
    };
    const waiter: Waiter = {
      settled: false,
      claim: (conn) => {
        cleanup();
        claim(conn);
      },
      fail: done,
    };
    timer = setTimeout(
      () =>
        done(
          new HboneTimeoutError('a pooled connection (queued behind full connections or a dial)', timeoutMs),
        ),
      Math.max(0, deadline - Date.now()),
    );
    timer.unref();
    signal?.addEventListener('abort', onAbort, { once: true });
    ks.waiters.push(waiter);
    this.#pump(ks);
  }

  /** The connection with room that is most used (packing keeps the connection count low). */
  #pick(ks: KeyState): PooledConnection | undefined {
    let best: PooledConnection | undefined;
    for (const c of ks.conns) {
      if (c.hasRoom && (best === undefined || c.active > best.active)) best = c;
    }
    return best;
  }

  /** Hands free slots to waiters in order, and dials when they need more room. */
  #pump(ks: KeyState): void {
    while (ks.waiters.length > 0) {
      const conn = this.#pick(ks);
      if (!conn) break;
      ks.waiters[0]!.claim(conn);
    }
    if (ks.waiters.length === 0 || ks.dialing || this.#closed) return;
    const live = ks.conns.filter((c) => c.drainReason === undefined).length;
    if (live >= this.config.maxConnectionsPerKey) return; // wait for a slot to free
    if (Date.now() < ks.nextDialAt && ks.lastError) {
      // Backing off after repeated failures: fail fast rather than hold opens hostage.
      this.#failWaiters(ks, ks.lastError);
      return;
    }
    this.#startDial(ks);
  }

  #startDial(ks: KeyState): void {
    ks.dialing = true;
    this.#counters.dials++;
    this.emit('dial', ks.key);
    this.#makeRoomForDial();
    let dialed: Promise<HboneClientSession>;
    try {
      dialed = this.#dial(ks.key);
    } catch (err) {
      dialed = Promise.reject(err);
    }
    const p = dialed.then(
      (session) => this.#dialSucceeded(ks, session),
      (err: unknown) => this.#dialFailed(ks, err instanceof Error ? err : new Error(String(err))),
    );
    this.#dialsInFlight.add(p);
    void p.finally(() => this.#dialsInFlight.delete(p));
  }

  #dialSucceeded(ks: KeyState, session: HboneClientSession): void {
    ks.dialing = false;
    if (this.#closed) {
      session.destroy();
      return;
    }
    if (session.maxStreams === 0) {
      session.destroy();
      this.#dialFailed(
        ks,
        new NoStreamCapacityError(
          `${ks.key.address.host}:${ks.key.address.port} advertises MAX_CONCURRENT_STREAMS = 0`,
        ),
      );
      return;
    }
    ks.failures = 0;
    ks.lastError = undefined;
    if (ks.forgetTimer !== undefined) clearTimeout(ks.forgetTimer);
    ks.forgetTimer = undefined;
    const conn = new PooledConnection(session, ks.id, this.config.maxStreamsPerConnection, Date.now());
    ks.conns.push(conn);
    this.#all.add(conn);
    session.on('streamClose', () => {
      conn.refusedStream = false;
      conn.lastUsedAt = Date.now();
      this.#pump(ks);
    });
    session.on('idle', () => this.#onIdle(conn));
    session.once('goaway', () => this.#drain(conn, 'goaway'));
    session.once('unhealthy', () => this.#drain(conn, 'unhealthy'));
    session.once('close', () => this.#removeConnection(ks, conn));
    if (this.config.maxLifetimeMs > 0) {
      const jitter = 1 - this.config.lifetimeJitter * Math.random();
      conn.setLifetimeTimer(this.config.maxLifetimeMs * jitter, () => this.#drain(conn, 'lifetime'));
    }
    this.emit('connect', ks.key, session);
    this.#pump(ks);
    if (conn.active === 0) this.#onIdle(conn);
  }

  #dialFailed(ks: KeyState, err: Error): void {
    ks.dialing = false;
    ks.failures++;
    ks.lastError = err;
    const delay = backoffDelayMs(ks.failures, this.config);
    ks.nextDialAt = Date.now() + delay;
    this.#counters.dialFailures++;
    this.emit('dialFailure', ks.key, err);
    // Failures count as consecutive while they come within backoffMaxMs of each other; after
    // that quiet time the key's record is dropped, so failed keys do not accumulate.
    if (ks.forgetTimer !== undefined) clearTimeout(ks.forgetTimer);
    ks.forgetTimer = setTimeout(() => {
      ks.forgetTimer = undefined;
      ks.failures = 0;
      this.#maybeForget(ks);
    }, Math.max(delay, this.config.backoffMaxMs) + 1);
    ks.forgetTimer.unref();
    // Everyone who waited on this dial hears about it now, with the same error.
    this.#failWaiters(ks, err);
  }

  #failWaiters(ks: KeyState, err: Error): void {
    for (const w of ks.waiters.splice(0)) w.fail(err);
  }

  #onIdle(conn: PooledConnection): void {
    if (conn.active > 0) return;
    if (conn.drainReason !== undefined || this.config.idleTimeoutMs === 0) {
      if (conn.drainReason === undefined) this.#drain(conn, 'idle');
      else void conn.session.close();
      return;
    }
    conn.setIdleTimer(this.config.idleTimeoutMs, () => {
      if (conn.active === 0) this.#drain(conn, 'idle');
    });
  }

  /** Stops a connection taking tunnels; it closes when its last tunnel ends. */
  #drain(conn: PooledConnection, reason: DrainReason): void {
    if (conn.drainReason !== undefined) return;
    conn.drainReason = reason;
    conn.clearIdleTimer();
    if (reason === 'idle' || reason === 'lifetime' || reason === 'lru' || reason === 'rotation') {
      this.#evictions[reason]++;
    }
    const ks = this.#keys.get(conn.keyId);
    this.emit('evict', ks?.key, reason);
    if (conn.active === 0) void conn.session.close();
    // Opens waiting for this key may now need a new connection.
    if (ks && reason !== 'pool-close') queueMicrotask(() => this.#pump(ks));
  }

  #removeConnection(ks: KeyState, conn: PooledConnection): void {
    conn.clearTimers();
    if (conn.drainReason === undefined) conn.drainReason = 'closed';
    const i = ks.conns.indexOf(conn);
    if (i !== -1) ks.conns.splice(i, 1);
    this.#all.delete(conn);
    this.emit('connectionClose', ks.key, conn.session);
    if (!this.#closed) this.#pump(ks);
    this.#maybeForget(ks);
  }

  /** Enforces `maxConnections` before a dial: the least recently used connection drains. */
  #makeRoomForDial(): void {
    let live = this.#dialsInFlight.size;
    let lruIdle: PooledConnection | undefined;
    let lru: PooledConnection | undefined;
    for (const c of this.#all) {
      if (c.drainReason !== undefined) continue;
      live++;
      if (lru === undefined || c.lastUsedAt < lru.lastUsedAt) lru = c;
      if (c.active === 0 && (lruIdle === undefined || c.lastUsedAt < lruIdle.lastUsedAt)) lruIdle = c;
    }
    if (live < this.config.maxConnections) return;
    const victim = lruIdle ?? lru;
    if (victim) this.#drain(victim, 'lru');
  }

  #maybeForget(ks: KeyState): void {
    if (ks.conns.length > 0 || ks.waiters.length > 0 || ks.dialing || ks.forgetTimer !== undefined) return;
    this.#keys.delete(ks.id);
    if (this.#current.get(ks.key.id) === ks.id) this.#current.delete(ks.key.id);
  }
}

/** Factory entry point. */
export function createPool(options: HbonePoolOptions): HbonePool {
  return new HbonePool(options);
}
