import { EventEmitter } from 'node:events';
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  type Authorizer,
  authorizeMemberOf,
  enforceServerPeers,
  keepServerCredentialsFresh,
  peerIdentity,
  type SpiffeId,
  tlsServerOptions,
  type X509BundleSource,
  type X509SvidSource,
} from '@hbone/spiffe';
import { type Authority, parseAuthority } from './authority.js';
import { H2HandshakeError, InvalidOptionError, SessionClosedError, TlsHandshakeError } from './errors.js';
import { INBOUND_BUDGET_BYTES, InboundBudget } from './inbound-budget.js';
import { connectionAddresses, IncomingTunnel, respondStatusOnly } from './incoming-tunnel.js';
import { startLiveness } from './liveness.js';
import {
  DRAIN_DEADLINE_MS,
  EARLY_RESET_BURST,
  EARLY_RESETS_PER_SECOND,
  H2_CODES,
  HANDSHAKE_TIMEOUT_MS,
  HBONE_PORT,
  INITIAL_CONNECTION_WINDOW_BYTES,
  MAX_SESSION_MEMORY_MB,
  MAX_WRITE_BUFFER_BYTES,
  PING_INTERVAL_MS,
  PING_TIMEOUT_MS,
  SERVER_IDLE_TIMEOUT_MS,
  SERVER_SETTINGS,
  UPSTREAM_CONNECT_TIMEOUT_MS,
} from './settings.js';
import { WriteBufferedSocket } from './write-buffered-socket.js';

/** Decides what to do with one CONNECT: call `accept()` or `reject(status)` on it. */
export type TunnelHandler = (tunnel: IncomingTunnel) => void | Promise<void>;

export interface HboneServerOptions {
  svidSource: X509SvidSource;
  bundleSource: X509BundleSource;
  /** Which client identities may connect. Default: members of our own trust domain (ztunnel). */
  authorizer?: Authorizer;
  /** Called for each valid CONNECT. */
  handler: TunnelHandler;
  /** The handler must answer within this time or the client gets 503. Default 15 s; 0 disables. */
  handlerTimeoutMs?: number;
  /** TLS handshake deadline (slowloris guard). Default 10 s. */
  handshakeTimeoutMs?: number;
  /** A connection with no tunnels for this long is closed. Default 5 min. */
  idleTimeoutMs?: number;
  /** SETTINGS_MAX_CONCURRENT_STREAMS. Default 200 (ztunnel). */
  maxConcurrentStreams?: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE. Default 64 KiB (ztunnel). */
  maxHeaderListSize?: number;
  /** PING liveness; 0 disables. Defaults 10 s / 20 s. */
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  /** Graceful drain deadline for `close()`. Default 5 s (ztunnel). */
  drainDeadlineMs?: number;
  /**
   * Hand HTTP/2 a write-buffered view of each socket so it never stops reading while a write
   * is pending (see write-buffered-socket.ts: two node peers can otherwise wedge under bulk
   * traffic both ways). Default true; false gives node's native socket path.
   */
  bufferWrites?: boolean;
  /**
   * Rapid-reset guard (CVE-2023-44487): how many streams a connection may see end before their
   * CONNECT was answered, as a burst refilled at `earlyResetsPerSecond`. Past it the connection
   * gets GOAWAY(ENHANCE_YOUR_CALM) and is closed. Defaults 200 and 50/s; a burst of 0 disables.
   */
  earlyResetBurst?: number;
  earlyResetsPerSecond?: number;
  /**
   * Bytes one connection may hold for tunnels whose readers are behind before every stream
   * window of that connection shrinks to 16 KiB (inbound-budget.ts). node's HTTP/2 does not let
   * the connection window bound this as ztunnel's does. A peer that makes us hold 4 x this much
   * (at least 48 MiB more) is disconnected (GOAWAY ENHANCE_YOUR_CALM, 'clientError'). Default 16 MiB (ztunnel's
   * connection window); 0 disables both (bound: maxConcurrentStreams x 4 MiB).
   */
  inboundBudgetBytes?: number;
}

export interface ServerConnectionInfo {
  readonly peerIdentity: SpiffeId;
  readonly session: http2.ServerHttp2Session;
  /** The connection's TLS socket (protocol, cipher, ALPN, addresses). `session.socket` may be
   * a write-buffered view of it (see `bufferWrites`) without TLS methods. */
  readonly socket: tls.TLSSocket;
}

function nonNegative(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0)
    throw new InvalidOptionError(`${name} must be a non-negative number, got ${v}`);
  return v;
}

/**
 * An HBONE server: mutual TLS 1.3 (client certificate required and verified per trust domain,
 * then authorised), HTTP/2 with ztunnel's SETTINGS, and CONNECT validation before the handler
 * sees anything:
 * - a method other than CONNECT, or a malformed `:authority` -> 400;
 * - CONNECT with `:scheme`/`:path`/`:protocol`, or without `:authority` -> RST_STREAM
 *   PROTOCOL_ERROR: node's nghttp2 rejects these malformed requests (RFC 9113 section 8.5)
 *   before we see the stream. ztunnel's h2 crate lets a CONNECT without `:authority` through
 *   and ztunnel answers 400; the reset is the stricter, RFC-correct answer.
 *
 * Events: 'connection' (ServerConnectionInfo), 'tunnel' (IncomingTunnel, before the handler),
 * 'clientError' (a typed error for a client rejected during TLS/identity/h2 set-up, or a
 * connection closed for resetting too many streams before their answer: SessionClosedError),
 * 'handlerError' (the handler threw).
 */
export class HboneServer extends EventEmitter {
  readonly #tls: tls.Server;
  readonly #h2: http2.Http2Server;
  readonly #opts: Required<Omit<HboneServerOptions, 'authorizer'>> & { authorizer: Authorizer };
  readonly #sessions = new Set<http2.ServerHttp2Session>();
  readonly #peers = new WeakMap<
    http2.Http2Session,
    {
      peer: SpiffeId;
      socket: tls.TLSSocket;
      connection: { readonly destroyed: boolean };
      inbound: InboundBudget;
    }
  >();
  readonly #unsubscribe: () => void;
  #closing: Promise<void> | undefined;
  #handoff: { peer: SpiffeId; socket: tls.TLSSocket } | undefined;
  readonly #sockets = new Set<Duplex>();
  readonly #activeStreams = new WeakMap<http2.Http2Session, () => number>();

  constructor(options: HboneServerOptions) {
    super();
    if (!options || typeof options.handler !== 'function')
      throw new InvalidOptionError('handler is required');
    if (!options.svidSource) throw new InvalidOptionError('svidSource is required');
    if (!options.bundleSource) throw new InvalidOptionError('bundleSource is required');
    const authorizer =
      options.authorizer ?? authorizeMemberOf(options.svidSource.getX509Svid().id.trustDomain);
    this.#opts = {
      ...options,
      authorizer,
      handlerTimeoutMs: nonNegative(
        'handlerTimeoutMs',
        options.handlerTimeoutMs,
        UPSTREAM_CONNECT_TIMEOUT_MS + 5_000,
      ),
      handshakeTimeoutMs: nonNegative('handshakeTimeoutMs', options.handshakeTimeoutMs, HANDSHAKE_TIMEOUT_MS),
      idleTimeoutMs: nonNegative('idleTimeoutMs', options.idleTimeoutMs, SERVER_IDLE_TIMEOUT_MS),
      maxConcurrentStreams: nonNegative(
        'maxConcurrentStreams',
        options.maxConcurrentStreams,
        SERVER_SETTINGS.maxConcurrentStreams,
      ),
      maxHeaderListSize: nonNegative(
        'maxHeaderListSize',
        options.maxHeaderListSize,
        SERVER_SETTINGS.maxHeaderListSize,
      ),
      pingIntervalMs: nonNegative('pingIntervalMs', options.pingIntervalMs, PING_INTERVAL_MS),
      pingTimeoutMs: nonNegative('pingTimeoutMs', options.pingTimeoutMs, PING_TIMEOUT_MS),
      drainDeadlineMs: nonNegative('drainDeadlineMs', options.drainDeadlineMs, DRAIN_DEADLINE_MS),
      bufferWrites: options.bufferWrites ?? true,
      inboundBudgetBytes: nonNegative('inboundBudgetBytes', options.inboundBudgetBytes, INBOUND_BUDGET_BYTES),
      earlyResetBurst: nonNegative('earlyResetBurst', options.earlyResetBurst, EARLY_RESET_BURST),
      earlyResetsPerSecond: nonNegative(
        'earlyResetsPerSecond',
        options.earlyResetsPerSecond,
        EARLY_RESETS_PER_SECOND,
      ),
    };

    const sources = { svidSource: options.svidSource, bundleSource: options.bundleSource, authorizer };
    this.#tls = tls.createServer({
      ...tlsServerOptions(sources),
      handshakeTimeout: this.#opts.handshakeTimeoutMs,
    });
    // Our SPIFFE checks (per-trust-domain chain, SVID leaf rules, authoriser) run before any
    // 'secureConnection' listener: a rejected client never reaches HTTP/2.
    const stopEnforcing = enforceServerPeers(this.#tls, { bundleSource: options.bundleSource, authorizer });
    const stopRotation = keepServerCredentialsFresh(this.#tls, sources);
    this.#unsubscribe = () => {
      stopRotation();
      stopEnforcing();
    };
    this.#tls.on('secureConnection', (socket: tls.TLSSocket) => this.#onSecureConnection(socket));
    // Every raw connection, including ones still in the handshake, so destroy() leaves none.
    this.#tls.on('connection', (socket: Duplex) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
    this.#tls.on('peerRejected', (err: Error, socket: tls.TLSSocket) => {
      socket.destroy();
      this.emit(
        'clientError',
        new TlsHandshakeError(`client identity rejected: ${err.message}`, { cause: err }),
      );
    });
    this.#tls.on('tlsClientError', (err, socket) => {
      socket.destroy();
      this.emit(
        'clientError',
        new TlsHandshakeError(`client TLS handshake failed: ${err.message}`, { cause: err }),
      );
    });

    // A plain (non-TLS) http2 server used only as a session factory: we hand it sockets that
    // already passed TLS and identity checks, so no stream ever reaches an unverified peer.
    this.#h2 = http2.createServer({
      settings: {
        ...SERVER_SETTINGS,
        maxConcurrentStreams: this.#opts.maxConcurrentStreams,
        maxHeaderListSize: this.#opts.maxHeaderListSize,
      },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    this.#h2.on('session', (session) => this.#onSession(session));
    this.#h2.on(
      'stream',
      (
        stream: http2.ServerHttp2Stream,
        headers: http2.IncomingHttpHeaders,
        _flags: number,
        rawHeaders: string[],
      ) => this.#onStream(stream, headers, rawHeaders),
    );
  }

  /** Starts listening. Default port 15008; pass 0 for an ephemeral port. */
  listen(port: number = HBONE_PORT, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.#tls.once('error', onError);
      this.#tls.listen(port, host, () => {
        this.#tls.removeListener('error', onError);
        resolve(this.#tls.address() as AddressInfo);
      });
    });
  }

  address(): AddressInfo | null {
    return this.#tls.address() as AddressInfo | null;
  }

  /** Number of live HBONE connections. */
  get connections(): number {
    return this.#sessions.size;
  }

  /**
   * Serves a connection that arrived some other way: the inner TLS of double HBONE, handed over
   * as the byte stream of an outer tunnel. It gets the same TLS, identity and h2 treatment.
   */
  acceptConnection(stream: Duplex): void {
    this.#tls.emit('connection', stream);
  }

  #onSecureConnection(socket: tls.TLSSocket): void {
    const reject = (err: Error): void => {
      socket.destroy();
      this.emit('clientError', err);
    };
    if (socket.alpnProtocol !== 'h2') {
      reject(new H2HandshakeError(`client did not negotiate ALPN h2 (got ${String(socket.alpnProtocol)})`));
      return;
    }
    let peer: SpiffeId;
    try {
      peer = peerIdentity(socket); // verified and authorised by enforceServerPeers
    } catch (err) {
      reject(new TlsHandshakeError(`client identity rejected: ${(err as Error).message}`, { cause: err }));
      return;
    }
    socket.setNoDelay?.(true);
    // node:http2 creates the session and emits 'session' synchronously inside this emit; the
    // hand-off field gives #onSession the raw socket and peer (session.socket is only a proxy
    // that throws once the session lets go of the socket).
    this.#handoff = { peer, socket };
    try {
      const bufferWrites = this.#opts.bufferWrites;
      this.#h2.emit(
        'connection',
        bufferWrites ? new WriteBufferedSocket(socket, MAX_WRITE_BUFFER_BYTES) : socket,
      );
    } finally {
      this.#handoff = undefined;
    }
  }

  #onSession(session: http2.ServerHttp2Session): void {
    const handoff = this.#handoff;
    if (!handoff) {
      session.destroy();
      return;
    }
    const { peer, socket } = handoff;
    this.#peers.set(session, {
      peer,
      socket,
      connection: {
        get destroyed() {
          return session.destroyed || socket.destroyed;
        },
      },
      inbound: new InboundBudget(session, {
        budgetBytes: this.#opts.inboundBudgetBytes,
        onOverLimit: (held, limit) => {
          const err = new SessionClosedError(
            `closing the connection from ${peer}: it made us hold ${held} bytes for unread tunnels, ` +
              `past the ${limit}-byte hard limit of its ${this.#opts.inboundBudgetBytes}-byte inbound budget ` +
              '(DATA sent into windows our SETTINGS had taken back): GOAWAY ENHANCE_YOUR_CALM',
          );
          this.emit('clientError', err);
          session.destroy(err, H2_CODES.ENHANCE_YOUR_CALM);
        },
      }),
    });
    this.#sessions.add(session);
    session.on('error', () => {}); // surfaced through 'close'
    // Open the connection window to 16 MiB as ztunnel does (node leaves it at 65,535 bytes).
    const widen = (): void => {
      try {
        session.setLocalWindowSize(INITIAL_CONNECTION_WINDOW_BYTES);
      } catch {
        // the session died before it started: nothing to widen
      }
    };
    if (session.connecting) session.once('connect', widen);
    else widen();
    // The handshake deadline covers the HTTP/2 preface and SETTINGS too (HANDSHAKE_TIMEOUT_MS):
    // a peer that completes TLS and then stays silent would otherwise hold the connection until
    // liveness gives up on it (30 s by default), or for ever with liveness off.
    if (this.#opts.handshakeTimeoutMs > 0) {
      const ms = this.#opts.handshakeTimeoutMs;
      const preface = setTimeout(() => {
        if (session.destroyed) return;
        this.emit('clientError', new H2HandshakeError(`no HTTP/2 preface and SETTINGS within ${ms} ms`));
        session.destroy();
      }, ms);
      preface.unref();
      // node processes bytes that arrived with the TLS handshake on the next tick: in time for this.
      session.once('remoteSettings', () => clearTimeout(preface));
      session.once('close', () => clearTimeout(preface));
    }
    const stopLiveness = startLiveness(
      session,
      () => {
        // ztunnel's abrupt_shutdown: GOAWAY(NO_ERROR), then drop the connection.
        try {
          session.goaway(H2_CODES.NO_ERROR);
        } catch {
          // already gone
        }
        session.destroy();
      },
      {
        intervalMs: this.#opts.pingIntervalMs,
        timeoutMs: this.#opts.pingTimeoutMs,
      },
    );
    let idleTimer: NodeJS.Timeout | undefined;
    const armIdle = (): void => {
      if (this.#opts.idleTimeoutMs === 0 || idleTimer !== undefined) return;
      idleTimer = setTimeout(() => session.close(), this.#opts.idleTimeoutMs);
      idleTimer.unref();
    };
    const disarmIdle = (): void => {
      if (idleTimer !== undefined) clearTimeout(idleTimer);
      idleTimer = undefined;
    };
    const earlyReset = this.#earlyResetGuard(session, peer);
    let active = 0;
    this.#activeStreams.set(session, () => active);
    session.on('stream', (stream: http2.ServerHttp2Stream) => {
      active++;
      disarmIdle();
      stream.once('close', () => {
        // Ended without an answer: reset by the peer, or by nghttp2 for a frame that made it. A
        // stream reset in the same read as its HEADERS may be gone before #onStream sees it.
        if (!stream.headersSent) earlyReset();
        if (--active === 0) {
          if (this.#closing && !session.closed && !session.destroyed) session.close();
          else if (!session.closed) armIdle();
        }
      });
    });
    if (this.#closing) {
      // A handshake that finished after close() began: tell the client to go elsewhere.
      session.goaway(H2_CODES.NO_ERROR, 0);
      session.close();
    }
    armIdle();
    session.once('close', () => {
      disarmIdle();
      stopLiveness();
      this.#sessions.delete(session);
      this.emit('connectionClosed', { peerIdentity: peer, session, socket });
    });
    this.emit('connection', { peerIdentity: peer, session, socket } satisfies ServerConnectionInfo);
  }

  #onStream(
    stream: http2.ServerHttp2Stream,
    headers: http2.IncomingHttpHeaders,
    rawHeaders: string[] = [],
  ): void {
    stream.on('error', () => {}); // resets surface through 'close'
    const conn = this.#peers.get(stream.session as http2.ServerHttp2Session);
    if (!conn) {
      stream.close(H2_CODES.REFUSED_STREAM);
      return;
    }
    if (headers[':method'] !== 'CONNECT') {
      respondStatusOnly(stream, 400);
      return;
    }
    let authority: Authority;
    try {
      authority = parseAuthority(String(headers[':authority']));
    } catch {
      respondStatusOnly(stream, 400);
      return;
    }
    const tunnel = new IncomingTunnel(
      stream,
      headers,
      authority,
      conn.peer,
      connectionAddresses(conn.socket),
      rawHeaders,
      conn.connection,
      conn.inbound,
    );
    this.emit('tunnel', tunnel);
    if (this.#opts.handlerTimeoutMs > 0) {
      const timer = setTimeout(() => {
        if (tunnel.decision === 'pending' && !stream.closed) tunnel.reject(503);
      }, this.#opts.handlerTimeoutMs);
      timer.unref();
      stream.once('close', () => clearTimeout(timer));
    }
    let result: void | Promise<void>;
    try {
      result = this.#opts.handler(tunnel);
    } catch (err) {
      this.#handlerFailed(tunnel, err);
      return;
    }
    if (result && typeof (result as Promise<void>).then === 'function') {
      (result as Promise<void>).then(undefined, (err: unknown) => this.#handlerFailed(tunnel, err));
    }
  }

  /**
   * The rapid-reset guard of one connection (CVE-2023-44487): a token bucket of streams that ended
   * before their answer, whoever reset them. A handler has usually started work for each (the
   * forwarder dials the upstream), and the peer's concurrency limit no longer bounds them once
   * they are reset.
   */
  #earlyResetGuard(session: http2.ServerHttp2Session, peer: SpiffeId): () => void {
    const burst = this.#opts.earlyResetBurst;
    const perMs = this.#opts.earlyResetsPerSecond / 1000;
    let tokens = burst;
    let last = Date.now();
    let resets = 0;
    return () => {
      if (burst === 0 || session.destroyed || session.closed) return;
      const now = Date.now();
      tokens = Math.min(burst, tokens + (now - last) * perMs);
      last = now;
      resets++;
      if (--tokens >= 0) return;
      const err = new SessionClosedError(
        `closing the connection from ${peer}: ${resets} streams reset before their answer ` +
          '(rapid reset, CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM',
      );
      this.emit('clientError', err);
      // With an error, node sends the code given; without one it would send NO_ERROR.
      session.destroy(err, H2_CODES.ENHANCE_YOUR_CALM);
    };
  }

  #handlerFailed(tunnel: IncomingTunnel, err: unknown): void {
    this.emit('handlerError', err, tunnel);
    if (tunnel.decision === 'pending' && !tunnel.stream.closed) tunnel.reject(503);
  }

  /**
   * Graceful drain (HBONE-WIRE.md "Drain"): stop accepting, send GOAWAY(2^31-1) + PING so
   * in-flight CONNECTs still land, then the final GOAWAY; live tunnels get `drainDeadlineMs` to
   * finish, then the connections are destroyed. Idempotent; resolves when all is closed.
   */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      const sessions = [...this.#sessions];
      const waits: Array<Promise<void>> = [new Promise<void>((r) => this.#tls.close(() => r()))];
      for (const s of sessions)
        waits.push(new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r()))));
      const deadline = setTimeout(() => this.#destroyAll(), this.#opts.drainDeadlineMs);
      deadline.unref();
      void Promise.all(waits).then(() => {
        clearTimeout(deadline);
        // Only now: a handshake that completes during the drain still gets verified (and then
        // a GOAWAY), rather than rejected as if its identity were wrong.
        this.#unsubscribe();
        resolve();
      });
      for (const s of sessions) {
        if (s.closed || s.destroyed) continue;
        // GOAWAY with the highest stream id first: CONNECTs already in flight still land.
        s.goaway(H2_CODES.NO_ERROR, 2 ** 31 - 1);
        // node stops reading a session that has sent GOAWAY and has no active stream (nghttp2
        // wants no more input), so neither the PING ACK nor a CONNECT in flight would ever be
        // read: such a session gets its final GOAWAY at once.
        if ((this.#activeStreams.get(s)?.() ?? 0) === 0) {
          s.close();
          continue;
        }
        // Otherwise, one PING round trip later the peer has seen it; the final GOAWAY then
        // names the real last stream and node closes the session once its streams are done.
        s.ping(() => {
          if (!s.closed && !s.destroyed) s.close();
        });
      }
    });
    return this.#closing;
  }

  /** Immediate stop: every connection destroyed. Idempotent. */
  destroy(): Promise<void> {
    this.#destroyAll();
    return this.close();
  }

  #destroyAll(): void {
    // INTERNAL_ERROR, not node's default NO_ERROR: HBONE reads RST_STREAM/GOAWAY with NO_ERROR
    // (or CANCEL) as a clean end, and a cut tunnel must not look complete to the peer.
    for (const s of this.#sessions) {
      s.destroy(new SessionClosedError('the HBONE server was destroyed'), H2_CODES.INTERNAL_ERROR);
    }
    for (const s of this.#sockets) s.destroy();
  }
}

/** Factory entry point: `createServer({ svidSource, bundleSource, handler })`. */
export function createServer(options: HboneServerOptions): HboneServer {
  return new HboneServer(options);
}
