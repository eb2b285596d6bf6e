import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  type Authorizer,
  authorizeOneOf,
  NotAuthorizedError,
  peerIdentity,
  SpiffeError,
  type SpiffeId,
  tlsClientOptions,
  type X509BundleSource,
  type X509SvidSource,
} from '@hbone/spiffe';
import { buildConnectHeaders, type TunnelRequest } from './connect-request.js';
import {
  ConnectError,
  errorForStatus,
  H2HandshakeError,
  type HboneError,
  HboneTimeoutError,
  IdentityMismatchError,
  InvalidOptionError,
  SessionClosedError,
  StreamResetError,
  TCP_CONNECT_PHASE,
  TlsHandshakeError,
} from './errors.js';
import { INBOUND_BUDGET_BYTES, InboundBudget } from './inbound-budget.js';
import { startLiveness } from './liveness.js';
import {
  CLIENT_MAX_STREAMS_PER_CONNECTION,
  CLIENT_SETTINGS,
  CONNECT_RESPONSE_TIMEOUT_MS,
  CONNECT_TIMEOUT_PROBE_MS,
  H2_CODES,
  HANDSHAKE_TIMEOUT_MS,
  HBONE_PORT,
  INITIAL_CONNECTION_WINDOW_BYTES,
  MAX_SESSION_MEMORY_MB,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
} from './settings.js';
import { type SniPolicy, sniFor } from './sni.js';
import { HboneTunnel, resetStream } from './tunnel.js';

export interface HboneClientOptions {
  /** Our identity: the SVID we present (re-read on every new connection, so rotation applies). */
  svidSource: X509SvidSource;
  /** Trust bundles, one per trust domain; the peer is verified against its own domain's bundle. */
  bundleSource: X509BundleSource;
  /**
   * Who the peer must be: ztunnel's explicit list of expected identities (an empty list
   * authorises nobody). Give this or `authorizer`, not both.
   */
  expectedIdentities?: Iterable<SpiffeId | string>;
  /** A custom authoriser for the peer identity, instead of `expectedIdentities`. */
  authorizer?: Authorizer;
  /** SNI: none by default, as ztunnel (HBONE dials pod IPs). */
  sni?: SniPolicy;
  /** TCP + TLS + first SETTINGS. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Wait for the CONNECT's `:status`. Default 10 s. */
  connectResponseTimeoutMs?: number;
  /** PING interval (0 disables) and timeout. Defaults 10 s / 20 s (ztunnel). */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** Streams we put on one connection at most (ztunnel pool: 100); the peer's limit also applies. */
  maxStreams?: number;
  /** Source address to bind (ztunnel binds the source workload's IP when it can). */
  localAddress?: string;
  /**
   * Bytes one connection may hold for tunnels whose readers are behind before every stream
   * window of it shrinks to 16 KiB (inbound-budget.ts); a server that makes us hold 4 x this much
   * (at least 48 MiB more) is disconnected (ENHANCE_YOUR_CALM). Default 16 MiB (ztunnel's
   * connection window); 0 disables both (bound: maxStreams x 4 MiB).
   */
  inboundBudgetBytes?: number;
}

export interface ConnectTarget {
  host: string;
  port?: number;
}

export interface OpenOptions {
  /** Overrides the session's `connectResponseTimeoutMs` for this tunnel. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface ResolvedOptions {
  authorizer: Authorizer;
  handshakeTimeoutMs: number;
  connectResponseTimeoutMs: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  maxStreams: number;
  inboundBudgetBytes: number;
}

function positive(name: string, v: number | undefined, dflt: number, allowZero = false): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) {
    throw new InvalidOptionError(
      `${name} must be a ${allowZero ? 'non-negative' : 'positive'} number, got ${v}`,
    );
  }
  return v;
}

/** @internal Validates client options once, at construction (undici's rule). */
export function resolveClientOptions(opts: HboneClientOptions): ResolvedOptions {
  if (!opts || typeof opts !== 'object') throw new InvalidOptionError('options are required');
  if (!opts.svidSource) throw new InvalidOptionError('svidSource is required');
  if (!opts.bundleSource) throw new InvalidOptionError('bundleSource is required');
  if (opts.expectedIdentities !== undefined && opts.authorizer !== undefined) {
    throw new InvalidOptionError('give expectedIdentities or authorizer, not both');
  }
  if (opts.expectedIdentities === undefined && opts.authorizer === undefined) {
    throw new InvalidOptionError('expectedIdentities or authorizer is required: whom do we expect to reach?');
  }
  const authorizer = opts.authorizer ?? authorizeOneOf([...(opts.expectedIdentities ?? [])]);
  return {
    authorizer,
    handshakeTimeoutMs: positive('handshakeTimeoutMs', opts.handshakeTimeoutMs, HANDSHAKE_TIMEOUT_MS),
    connectResponseTimeoutMs: positive(
      'connectResponseTimeoutMs',
      opts.connectResponseTimeoutMs,
      CONNECT_RESPONSE_TIMEOUT_MS,
    ),
    pingIntervalMs: positive('pingIntervalMs', opts.pingIntervalMs, PING_INTERVAL_MS, true),
    pingTimeoutMs: positive('pingTimeoutMs', opts.pingTimeoutMs, PING_TIMEOUT_MS),
    maxStreams: positive('maxStreams', opts.maxStreams, CLIENT_MAX_STREAMS_PER_CONNECTION),
    inboundBudgetBytes: positive('inboundBudgetBytes', opts.inboundBudgetBytes, INBOUND_BUDGET_BYTES, true),
  };
}

/** Turns whatever failed during a handshake into one of our typed errors. */
function classifyHandshakeError(err: unknown): HboneError {
  if (err instanceof NotAuthorizedError) {
    return new IdentityMismatchError(`peer identity rejected: ${err.message}`, { cause: err });
  }
  if (err instanceof SpiffeError) {
    return new TlsHandshakeError(`peer certificate rejected: ${err.message}`, { cause: err });
  }
  const e = err as NodeJS.ErrnoException | undefined;
  const code = e?.code ?? '';
  if (
    code.startsWith('ERR_SSL') ||
    code.startsWith('ERR_TLS') ||
    /alert|ssl|tls|certificate/i.test(e?.message ?? '')
  ) {
    return new TlsHandshakeError(`TLS handshake failed: ${e?.message}`, { cause: err });
  }
  if (code === 'ECONNRESET' || code === 'EPIPE') {
    return new TlsHandshakeError(`connection reset during the TLS handshake (${code})`, { cause: err });
  }
  return new ConnectError(`cannot connect: ${e?.message ?? String(err)}`, { cause: err });
}

export type ClientSessionState = 'open' | 'draining' | 'closed';

/** Shared no-op 'error' listener: errors are read from 'close' and rstCode instead. */
function ignoreError(): void {}

/** How long a closing connection with no tunnels left may take to go away before we destroy it. */
const IDLE_CLOSE_GRACE_MS = 1_000;

/**
 * One HBONE connection from the client side: mutual TLS 1.3 carrying HTTP/2, on which
 * tunnels are opened with `open()`. Create with `connect()` (over TCP) or `connectOver()`
 * (over an existing tunnel: double HBONE).
 *
 * Events: 'goaway' (the peer is draining: no new tunnels), 'unhealthy' (PING timeout),
 * 'streamClose' (a tunnel's stream closed; arg: streams still active), 'idle' (no tunnels
 * left), 'close' (once, with the error if one caused it).
 */
export class HboneClientSession extends EventEmitter {
  /** The peer's verified SPIFFE identity. */
  readonly peerIdentity: SpiffeId;
  readonly #session: http2.ClientHttp2Session;
  readonly #socket: tls.TLSSocket;
  readonly #opts: ResolvedOptions;
  #state: ClientSessionState = 'open';
  #active = 0;
  #opened = 0;
  #closeError: Error | undefined;
  readonly #stopLiveness: () => void;
  /** "Is the connection gone?" for tunnels: node destroys streams before the socket on teardown. */
  readonly #connection: { readonly destroyed: boolean };
  readonly #inbound: InboundBudget;
  /** A liveness probe after a CONNECT timeout is under way (`#probe`). */
  #probing = false;

  /** @internal use `connect()` */
  constructor(
    session: http2.ClientHttp2Session,
    socket: tls.TLSSocket,
    peer: SpiffeId,
    opts: ResolvedOptions,
  ) {
    super();
    this.#session = session;
    this.#socket = socket;
    this.peerIdentity = peer;
    this.#opts = opts;
    this.#inbound = new InboundBudget(session, {
      budgetBytes: opts.inboundBudgetBytes,
      onOverLimit: (held, limit) =>
        this.#teardown(
          new SessionClosedError(
            `the server made us hold ${held} bytes for unread tunnels, past the ${limit}-byte hard ` +
              `limit of our ${opts.inboundBudgetBytes}-byte inbound budget: GOAWAY ENHANCE_YOUR_CALM`,
          ),
          H2_CODES.ENHANCE_YOUR_CALM,
        ),
    });
    this.#connection = {
      get destroyed() {
        return session.destroyed || socket.destroyed;
      },
    };
    session.on('goaway', () => {
      if (this.#state === 'open') {
        this.#state = 'draining';
        this.emit('goaway');
      }
    });
    session.on('error', (err) => {
      this.#closeError ??= err;
    });
    session.once('close', () => {
      this.#state = 'closed';
      this.#stopLiveness();
      this.emit('close', this.#closeError);
    });
    this.#stopLiveness = startLiveness(
      session,
      (reason) => {
        this.#closeError = new SessionClosedError(`HBONE connection unhealthy: ${reason}`);
        if (this.#state === 'open') this.#state = 'draining';
        this.emit('unhealthy', this.#closeError);
        session.destroy();
      },
      { intervalMs: opts.pingIntervalMs, timeoutMs: opts.pingTimeoutMs },
    );
  }

  readonly #onStreamClosed = (): void => {
    this.#active--;
    // Pools listen to these to hand the freed slot to a waiting open.
    this.emit('streamClose', this.#active);
    if (this.#active === 0) this.emit('idle');
  };

  get state(): ClientSessionState {
    return this.#state;
  }

  /**
   * After a CONNECT went unanswered: is the connection itself still alive? One PING, answered
   * within `pingTimeoutMs` (at most CONNECT_TIMEOUT_PROBE_MS), or the connection is destroyed so
   * that later opens (and the pool) stop waiting on it. Needed because nghttp2 can end a
   * connection without node telling anyone: a server's DATA before its answer makes nghttp2 send
   * GOAWAY(PROTOCOL_ERROR) and stop, while node's session stays open (hostile-server-answers).
   * One probe at a time; its timer is unref()ed and cleared on close.
   */
  #probe(afterMs: number): void {
    if (this.#probing || this.#state === 'closed' || this.#session.destroyed) return;
    const ms = Math.min(this.#opts.pingTimeoutMs, CONNECT_TIMEOUT_PROBE_MS);
    this.#probing = true;
    const done = (): void => {
      this.#probing = false;
      clearTimeout(timer);
      this.removeListener('close', done);
    };
    const timer = setTimeout(() => {
      done();
      this.destroy(
        new SessionClosedError(
          `the peer answered neither a CONNECT within ${afterMs} ms nor a PING within ${ms} ms`,
        ),
      );
    }, ms);
    timer.unref();
    this.once('close', done);
    try {
      if (!this.#session.ping((err) => (err ? undefined : done()))) done();
    } catch {
      done();
    }
  }

  /** True while the session takes new tunnels. */
  get available(): boolean {
    return this.#state === 'open' && !this.#session.destroyed && this.#active < this.maxStreams;
  }

  /** Tunnels open (or opening) on this connection. */
  get activeStreams(): number {
    return this.#active;
  }

  /** Tunnels ever opened on this connection. */
  get totalStreams(): number {
    return this.#opened;
  }

  /** min(our cap, the peer's SETTINGS_MAX_CONCURRENT_STREAMS). */
  get maxStreams(): number {
    const peer = this.#session.remoteSettings?.maxConcurrentStreams ?? Number.POSITIVE_INFINITY;
    return Math.min(this.#opts.maxStreams, peer);
  }

  get remoteSettings(): http2.Settings {
    return this.#session.remoteSettings;
  }

  get localAddress(): string | undefined {
    return this.#socket.localAddress;
  }

  get remoteAddress(): string | undefined {
    return this.#socket.remoteAddress;
  }

  /** The negotiated TLS facts (protocol, cipher, ALPN), for logs and tests. */
  get tls(): { protocol: string | null; cipher: string; alpn: string | false } {
    return {
      protocol: this.#socket.getProtocol(),
      cipher: this.#socket.getCipher().standardName,
      alpn: this.#socket.alpnProtocol ?? false,
    };
  }

  /**
   * Opens a tunnel: sends CONNECT with `:authority` and the HBONE headers, and resolves with
   * the tunnel once the peer answers 200. Rejects with a typed error otherwise.
   */
  open(request: TunnelRequest, opts: OpenOptions = {}): Promise<HboneTunnel> {
    if (this.#state !== 'open' || this.#session.destroyed || this.#session.closed) {
      return Promise.reject(
        new SessionClosedError(`HBONE connection is ${this.#state}: it takes no new tunnels`, {
          cause: this.#closeError,
        }),
      );
    }
    let headers: http2.OutgoingHttpHeaders;
    try {
      headers = buildConnectHeaders(request);
    } catch (err) {
      return Promise.reject(err);
    }
    const timeoutMs = opts.timeoutMs ?? this.#opts.connectResponseTimeoutMs;
    let stream: http2.ClientHttp2Stream;
    try {
      stream = this.#session.request(headers, { endStream: false });
    } catch (err) {
      return Promise.reject(
        new SessionClosedError('cannot open a stream on this connection', { cause: err }),
      );
    }
    this.#active++;
    this.#opened++;
    // A class-field handler, not a closure: a closure here would keep this open() call's
    // scope (headers, options, timers) alive for the tunnel's whole life (kilobytes per tunnel).
    stream.once('close', this.#onStreamClosed);

    return new Promise<HboneTunnel>((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        fail(new HboneTimeoutError('the CONNECT response', timeoutMs));
        this.#probe(timeoutMs);
      }, timeoutMs);
      timer.unref();
      const onAbort = (): void => fail(new HboneTimeoutError('the CONNECT response (aborted)', 0));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => {
        settled = true;
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        stream.removeListener('response', onResponse);
        stream.removeListener('close', onClose);
      };
      const fail = (err: Error): void => {
        if (settled) return;
        cleanup();
        resetStream(stream, http2.constants.NGHTTP2_CANCEL);
        reject(err);
      };
      const onResponse = (resHeaders: http2.IncomingHttpHeaders): void => {
        if (settled) return;
        const status = Number(resHeaders[':status']);
        if (status !== 200) {
          fail(errorForStatus(status));
          return;
        }
        cleanup();
        resolve(
          new HboneTunnel(stream, {
            authority: String(headers[':authority']),
            requestHeaders: headers as http2.IncomingHttpHeaders,
            responseHeaders: resHeaders,
            socket: this.#connection,
            inbound: this.#inbound,
          }),
        );
      };
      const onClose = (): void => {
        const code = stream.rstCode ?? 0;
        if (this.#session.destroyed || (code === 0 && this.#state !== 'open')) {
          fail(new SessionClosedError('the HBONE connection closed before the CONNECT was answered'));
        } else {
          fail(new StreamResetError(code, 'before response'));
        }
      };
      stream.on('response', onResponse);
      stream.on('close', onClose);
      stream.on('error', ignoreError); // reported through 'close' and rstCode
    });
  }

  /**
   * Graceful close: GOAWAY, let open tunnels finish, then close. Resolves when closed, also
   * when the peer's GOAWAY already started the shutdown (node drops a close callback then).
   * Once no tunnel is left the connection has nothing to wait for: if node has not let go of
   * it within IDLE_CLOSE_GRACE_MS, it is destroyed.
   */
  close(): Promise<void> {
    if (this.#state === 'closed') return Promise.resolve();
    return new Promise((resolve) => {
      this.once('close', () => resolve());
      if (this.#state === 'open') this.#state = 'draining';
      if (!this.#session.closed && !this.#session.destroyed) this.#session.close();
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        timer ??= setTimeout(() => this.destroy(), IDLE_CLOSE_GRACE_MS);
        timer.unref();
      };
      if (this.#active === 0) arm();
      else this.once('idle', arm);
      this.once('close', () => {
        if (timer !== undefined) clearTimeout(timer);
        this.removeListener('idle', arm);
      });
    });
  }

  /** Immediate close: every tunnel fails with SessionClosedError. Idempotent. */
  destroy(err?: Error): void {
    // INTERNAL_ERROR: a GOAWAY with node's default NO_ERROR would read as a clean end to HBONE.
    this.#teardown(
      err ?? new SessionClosedError('the HBONE connection was destroyed'),
      H2_CODES.INTERNAL_ERROR,
      err,
    );
  }

  /** The one immediate teardown: GOAWAY(`code`), every tunnel fails, the socket goes. */
  #teardown(err: Error, code: number, cause: Error | undefined = err): void {
    if (cause) this.#closeError ??= cause;
    if (this.#state !== 'closed') this.#state = 'draining';
    this.#session.destroy(err, code);
    // node's session teardown waits for its native handle, which can wait on a write the peer
    // never reads; destroying the socket too makes "immediate" mean immediate.
    this.#socket.destroy();
  }
}

/** Starts HTTP/2 over an already-secured socket and waits for the peer's SETTINGS. */
function startH2(
  socket: tls.TLSSocket,
  authority: string,
  peer: SpiffeId,
  opts: ResolvedOptions,
  deadline: number,
): Promise<HboneClientSession> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(authority, {
      createConnection: () => socket,
      settings: { ...CLIENT_SETTINGS },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
      // ztunnel never sends PUSH_PROMISE; we refuse them (ENABLE_PUSH=0 in CLIENT_SETTINGS).
      peerMaxConcurrentStreams: opts.maxStreams,
    });
    let settled = false;
    const timer = setTimeout(
      () => fail(new HboneTimeoutError('the peer HTTP/2 SETTINGS', opts.handshakeTimeoutMs)),
      Math.max(0, deadline - Date.now()),
    );
    timer.unref();
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.destroy();
      socket.destroy();
      reject(err);
    };
    session.once('connect', () => {
      // node:http2 leaves the connection window at 65,535 bytes; ztunnel opens it to 16 MiB.
      session.setLocalWindowSize(INITIAL_CONNECTION_WINDOW_BYTES);
    });
    session.once('remoteSettings', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      session.removeListener('close', onEarlyClose);
      session.removeListener('error', onEarlyError);
      resolve(new HboneClientSession(session, socket, peer, opts));
    });
    // The server verifies our certificate only after the TLS handshake (TLS 1.3): a peer that
    // rejects us closes before its SETTINGS arrive. Say so, rather than "connection closed".
    const onEarlyClose = (): void =>
      fail(
        new TlsHandshakeError(
          'the peer closed the connection before HTTP/2 started: it likely rejected our certificate or identity',
        ),
      );
    const onEarlyError = (err: Error): void => {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      if (code.startsWith('ERR_SSL') || /alert/i.test(err.message)) fail(classifyHandshakeError(err));
      else fail(new H2HandshakeError(`HTTP/2 did not start: ${err.message}`, { cause: err }));
    };
    session.once('close', onEarlyClose);
    session.once('error', onEarlyError);
    // Over an outer tunnel (double HBONE) a rejecting peer shows up as the outer stream ending;
    // node's session does not notice an ended Duplex by itself.
    socket.once('end', onEarlyClose);
    socket.once('close', onEarlyClose);
    const detach = (): void => {
      socket.removeListener('end', onEarlyClose);
      socket.removeListener('close', onEarlyClose);
    };
    session.once('remoteSettings', detach);
  });
}

/** Runs the TLS handshake on `socket` or a new TCP connection, with every check HBONE needs. */
function handshake(
  target: ConnectTarget,
  options: HboneClientOptions,
  opts: ResolvedOptions,
  over: Duplex | undefined,
  deadline: number,
): Promise<{ socket: tls.TLSSocket; peer: SpiffeId }> {
  return new Promise((resolve, reject) => {
    const port = target.port ?? HBONE_PORT;
    const tlsOpts = tlsClientOptions({
      svidSource: options.svidSource,
      bundleSource: options.bundleSource,
      authorizer: opts.authorizer,
    });
    const servername = sniFor(options.sni);
    const socket = tls.connect({
      ...tlsOpts,
      ...(over ? { socket: over } : { host: target.host, port }),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      servername,
    });
    let settled = false;
    const timer = setTimeout(
      () =>
        fail(
          new HboneTimeoutError(
            socket.connecting ? TCP_CONNECT_PHASE : 'the TLS handshake',
            opts.handshakeTimeoutMs,
          ),
        ),
      Math.max(0, deadline - Date.now()),
    );
    timer.unref();
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', (err) => fail(classifyHandshakeError(err)));
    socket.once('close', () => fail(new TlsHandshakeError('connection closed during the TLS handshake')));
    socket.once('secureConnect', () => {
      if (settled) return;
      if (socket.alpnProtocol !== 'h2') {
        fail(new H2HandshakeError(`peer did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`));
        return;
      }
      let peer: SpiffeId;
      try {
        peer = peerIdentity(socket);
      } catch (err) {
        fail(classifyHandshakeError(err));
        return;
      }
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('error');
      socket.removeAllListeners('close');
      socket.setNoDelay?.(true);
      resolve({ socket, peer });
    });
    if (!over) socket.setNoDelay(true);
  });
}

function authorityOf(target: ConnectTarget): string {
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `https://${host}:${target.port ?? HBONE_PORT}`;
}

/**
 * Dials an HBONE peer: TCP, mutual TLS 1.3 (ALPN h2, SPIFFE verification of the peer against
 * its own trust domain's bundle, then the authoriser), HTTP/2 with ztunnel's SETTINGS and a
 * 16 MiB connection window. Resolves when the peer's SETTINGS arrive.
 */
export async function connect(
  target: ConnectTarget,
  options: HboneClientOptions,
): Promise<HboneClientSession> {
  const opts = resolveClientOptions(options);
  if (!target || typeof target.host !== 'string' || target.host.length === 0) {
    throw new InvalidOptionError('target.host is required');
  }
  const deadline = Date.now() + opts.handshakeTimeoutMs;
  const { socket, peer } = await handshake(target, options, opts, undefined, deadline);
  return startH2(socket, authorityOf(target), peer, opts, deadline);
}

/**
 * Double HBONE: runs a fresh TLS 1.3 + HTTP/2 session inside an existing byte stream (an outer
 * tunnel to an east-west gateway). The inner session verifies the remote workload's identities;
 * it is never pooled (HBONE-WIRE.md "Double HBONE").
 */
export async function connectOver(outer: Duplex, options: HboneClientOptions): Promise<HboneClientSession> {
  const opts = resolveClientOptions(options);
  const deadline = Date.now() + opts.handshakeTimeoutMs;
  const { socket, peer } = await handshake({ host: 'inner' }, options, opts, outer, deadline);
  return startH2(socket, 'https://inner', peer, opts, deadline);
}
