import type { Socket } from 'node:net';
import { H2_CODES } from './settings.js';
import type { HboneTunnel } from './tunnel.js';

export interface JoinOptions {
  /**
   * How failures cross the join. ztunnel's default (`src/copy.rs`) is a FIN both ways: a TCP
   * error (e.g. an RST from the upstream) ends the tunnel with END_STREAM, and a tunnel error
   * (a reset from the peer, a dead HBONE connection) shuts the socket down with a FIN. `true`
   * carries resets instead: RST_STREAM(CONNECT_ERROR) towards the peer, TCP RST towards the
   * socket, so each side sees a failure rather than a clean end (istio/ztunnel#1483).
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
 * A failure on one side ends the other with a FIN, as ztunnel does, or with a reset when
 * `propagateResets` is set. Resolves when both sides are closed, with the byte counts.
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
    tunnel.once('close', () => {
      // Once the tunnel is gone nothing can carry the socket's bytes: an upstream still sending
      // (the peer ended with RST_STREAM(CANCEL) or NO_ERROR) would otherwise stay paused, unread,
      // for good. Flush what we owe it, FIN, and let go.
      if (!socket.destroyed) socket.destroySoon();
      closed();
    });
    socket.once('close', closed);
    tunnel.on('error', (err) => {
      error ??= err;
      if (opts.propagateResets) socket.resetAndDestroy();
      // ztunnel: flush what we have, FIN, then let go of the socket.
      else socket.destroySoon();
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
