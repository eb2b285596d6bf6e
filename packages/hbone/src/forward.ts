import * as net from 'node:net';
import type { Authority } from './authority.js';
import type { WorkloadAttributes } from './baggage.js';
import type { IncomingTunnel } from './incoming-tunnel.js';
import { type JoinOptions, type JoinResult, joinTunnel } from './join.js';
import type { TunnelHandler } from './server.js';
import { UPSTREAM_CONNECT_TIMEOUT_MS } from './settings.js';

/** Where the forwarder dials for a given CONNECT; undefined -> 503 (unknown target). */
export type UpstreamResolver = (
  tunnel: IncomingTunnel,
) => { host: string; port: number } | undefined | Promise<{ host: string; port: number } | undefined>;

export interface ForwardOptions extends JoinOptions {
  /** Upstream dial timeout. Default 10 s (ztunnel). */
  connectTimeoutMs?: number;
  /**
   * Maps a CONNECT to the address to dial. Default: the `:authority` itself, and only when its
   * IP is the address the HBONE connection arrived on (ztunnel `validate_destination`: a node
   * proxy is not an open relay); any other IP gets 400, a hostname 503.
   */
  resolve?: UpstreamResolver;
  /** With the default resolver, dial any IP authority (an open relay: tests and labs only). */
  allowAnyDestination?: boolean;
  /** Destination attributes for the 200's `baggage` (ztunnel sends them by default). */
  responseBaggage?: WorkloadAttributes | ((tunnel: IncomingTunnel) => WorkloadAttributes | undefined);
  /** Runs before dialling; return a status (e.g. 401) to reject instead. */
  authorize?: (tunnel: IncomingTunnel) => number | undefined | Promise<number | undefined>;
  /** Called once per tunnel when both directions are done. */
  onComplete?: (tunnel: IncomingTunnel, result: JoinResult & { status: number }) => void;
}

const unmapped = (ip: string | undefined): string | undefined =>
  ip?.startsWith('::ffff:') && ip.includes('.') ? ip.slice(7) : ip;

/** 400 when the authority names an IP other than the one the client dialled. */
function defaultDestinationStatus(t: IncomingTunnel, allowAny: boolean): number | undefined {
  const a: Authority = t.authority;
  // A hostname authority belongs to double HBONE: only a resolver knows where it lives.
  if (a.kind === 'hostname') return 503;
  if (allowAny) return undefined;
  return unmapped(a.host) === unmapped(t.connection.localAddress) ? undefined : 400;
}

/**
 * The ready-made server handler (ztunnel's inbound): dial the target, answer 200 only once the
 * upstream TCP connect succeeded, 503 if it failed or timed out, then pipe both ways with
 * half-close.
 */
export function forwardHandler(opts: ForwardOptions = {}): TunnelHandler {
  const timeoutMs = opts.connectTimeoutMs ?? UPSTREAM_CONNECT_TIMEOUT_MS;
  const resolve: UpstreamResolver =
    opts.resolve ?? ((t) => ({ host: t.authority.host, port: t.authority.port }));
  return async (tunnel) => {
    const complete = (status: number, r: JoinResult = { bytesToTunnel: 0, bytesFromTunnel: 0 }): void =>
      opts.onComplete?.(tunnel, { ...r, status });
    const denied = opts.authorize ? await opts.authorize(tunnel) : undefined;
    if (denied !== undefined) {
      if (tunnel.decision === 'pending') tunnel.reject(denied);
      complete(denied);
      return;
    }
    const invalid = opts.resolve
      ? undefined
      : defaultDestinationStatus(tunnel, opts.allowAnyDestination === true);
    if (invalid !== undefined) {
      if (tunnel.decision === 'pending') tunnel.reject(invalid);
      complete(invalid);
      return;
    }
    const target = await resolve(tunnel);
    if (!target) {
      if (tunnel.decision === 'pending') tunnel.reject(503);
      complete(503);
      return;
    }
    let upstream: net.Socket;
    // A client that gives up (resets the stream) while we dial should not leave the dial running
    // for up to connectTimeoutMs.
    const abandon = new AbortController();
    const onGone = (): void => abandon.abort();
    tunnel.stream.once('close', onGone);
    try {
      upstream = await dial(target.host, target.port, timeoutMs, abandon.signal);
    } catch (err) {
      tunnel.stream.removeListener('close', onGone);
      if (tunnel.decision === 'pending') tunnel.reject(503);
      complete(503, { bytesToTunnel: 0, bytesFromTunnel: 0, error: err as Error });
      return;
    }
    tunnel.stream.removeListener('close', onGone);
    if (tunnel.decision !== 'pending' || tunnel.stream.closed) {
      upstream.destroy();
      return;
    }
    const baggage =
      typeof opts.responseBaggage === 'function' ? opts.responseBaggage(tunnel) : opts.responseBaggage;
    const t = tunnel.accept(baggage ? { baggage } : {});
    const result = await joinTunnel(t, upstream, opts);
    complete(200, result);
  };
}

/** TCP connect with a deadline; the socket is half-open capable and NODELAY. */
export function dial(
  host: string,
  port: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const fail = (err: Error): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      reject(err);
    };
    const onAbort = (): void =>
      fail(Object.assign(new Error(`connect ${host}:${port} abandoned`), { code: 'ABORT_ERR' }));
    const timer = setTimeout(
      () =>
        fail(
          Object.assign(new Error(`connect ${host}:${port} timed out after ${timeoutMs} ms`), {
            code: 'ETIMEDOUT',
          }),
        ),
      timeoutMs,
    );
    timer.unref();
    if (signal?.aborted) {
      onAbort();
      return;
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    socket.once('connect', () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', fail);
  });
}
