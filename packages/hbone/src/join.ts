import type { Socket } from 'node:net';
import { H2_CODES } from './settings.js';
import type { HboneTunnel } from './tunnel.js';

export interface JoinOptions {
  /**
   * What a TCP error (e.g. an RST from the upstream) does to the tunnel. ztunnel turns it into
   * a FIN (END_STREAM) and that is the default; `true` resets the stream with CONNECT_ERROR
   * instead, so the peer sees the failure (what istio/ztunnel#1483 asks for).
   */
  propagateResets?: boolean;
}

export interface JoinResult {
  /** Bytes read from the socket and sent into the tunnel. */
  readonly bytesToTunnel: number;
  /** Bytes received from the tunnel and written to the socket. */
  readonly bytesFromTunnel: number;
  /** The first error on either side, if any (the join still resolves). */
  readonly error?: Error;
}

/**
 * Joins a tunnel with a TCP socket both ways, with TCP's half-close carried across:
 * socket FIN -> END_STREAM, END_STREAM -> socket FIN; the other direction keeps flowing.
 * A tunnel error (a reset from the peer) resets the socket; a socket error ends or resets the
 * tunnel (see `propagateResets`). Resolves when both sides are closed, with the byte counts.
 */
export function joinTunnel(tunnel: HboneTunnel, socket: Socket, opts: JoinOptions = {}): Promise<JoinResult> {
  // A FIN from the socket must not end its own write side: the tunnel may still send.
  socket.allowHalfOpen = true;
  socket.setNoDelay?.(true);
  let error: Error | undefined;
  socket.pipe(tunnel);
  tunnel.pipe(socket);

  return new Promise<JoinResult>((resolve) => {
    let open = 2;
    const closed = (): void => {
      if (--open > 0) return;
      // The tunnel counts payload bytes itself: no per-chunk listener on the hot path.
      const bytesToTunnel = tunnel.bytesSent;
      const bytesFromTunnel = tunnel.bytesReceived;
      resolve(error ? { bytesToTunnel, bytesFromTunnel, error } : { bytesToTunnel, bytesFromTunnel });
    };
    tunnel.once('close', closed);
    socket.once('close', closed);
    tunnel.on('error', (err) => {
      error ??= err;
      // The peer reset the stream: the local application must see a failure, not a clean FIN.
      if (typeof socket.resetAndDestroy === 'function') socket.resetAndDestroy();
      else socket.destroy();
    });
    socket.on('error', (err) => {
      error ??= err;
      if (opts.propagateResets) {
        tunnel.reset(H2_CODES.CONNECT_ERROR);
      } else if (!tunnel.writableEnded) {
        tunnel.end();
      }
      socket.destroy();
    });
  });
}
