import * as net from 'node:net';
import type { Authority } from './authority.js';
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
  /** Maps a CONNECT to the address to dial. Default: the `:authority` itself (IPs only). */
  resolve?: UpstreamResolver;
  /** Runs before dialling; return a status (e.g. 401) to reject instead. */
  authorize?: (tunnel: IncomingTunnel) => number | undefined | Promise<number | undefined>;
  /** Called once per tunnel when both directions are done. */
  onComplete?: (tunnel: IncomingTunnel, result: JoinResult & { status: number }) => void;
}

function defaultResolve(t: IncomingTunnel): { host: string; port: number } | undefined {
  const a: Authority = t.authority;
  // A hostname authority belongs to double HBONE: only a resolver knows where it lives.
  if (a.kind === 'hostname') return undefined;
  return { host: a.host, port: a.port };
}

/**
 * The ready-made server handler (ztunnel's inbound): dial the target, answer 200 only once the
 * upstream TCP connect succeeded, 503 if it failed or timed out, then pipe both ways with
 * half-close.
 */
export function forwardHandler(opts: ForwardOptions = {}): TunnelHandler {
  const timeoutMs = opts.connectTimeoutMs ?? UPSTREAM_CONNECT_TIMEOUT_MS;
  const resolve = opts.resolve ?? defaultResolve;
  return async (tunnel) => {
    const complete = (status: number, r: JoinResult = { bytesToTunnel: 0, bytesFromTunnel: 0 }): void =>
      opts.onComplete?.(tunnel, { ...r, status });
    const denied = opts.authorize ? await opts.authorize(tunnel) : undefined;
    if (denied !== undefined) {
      if (tunnel.decision === 'pending') tunnel.reject(denied);
      complete(denied);
      return;
    }
    const target = await resolve(tunnel);
    if (!target) {
      if (tunnel.decision === 'pending') tunnel.reject(503);
      complete(503);
      return;
    }
    let upstream: net.Socket;
    try {
      upstream = await dial(target.host, target.port, timeoutMs);
    } catch (err) {
      if (tunnel.decision === 'pending') tunnel.reject(503);
      complete(503, { bytesToTunnel: 0, bytesFromTunnel: 0, error: err as Error });
      return;
    }
    if (tunnel.decision !== 'pending' || tunnel.stream.closed) {
      upstream.destroy();
      return;
    }
    const t = tunnel.accept();
    const result = await joinTunnel(t, upstream, opts);
    complete(200, result);
  };
}

/** TCP connect with a deadline; the socket is half-open capable and NODELAY. */
export function dial(host: string, port: number, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port, allowHalfOpen: true, noDelay: true });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        Object.assign(new Error(`connect ${host}:${port} timed out after ${timeoutMs} ms`), {
          code: 'ETIMEDOUT',
        }),
      );
    }, timeoutMs);
    timer.unref();
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    });
  });
}
