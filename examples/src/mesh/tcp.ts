/**
 * Plain TCP pieces the mesh components share: a dial with a source address and a deadline, a
 * two-way join of sockets with half-close, and `ip:port` splitting.
 */
import * as net from 'node:net';
import { HboneTimeoutError } from '@hbone/hbone';

/** TCP connect from `localAddress` with a deadline (HboneTimeoutError 'the TCP connect'). */
export function dialTcp(
  host: string,
  port: number,
  opts: { localAddress?: string; timeoutMs: number },
): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({
      host,
      port,
      allowHalfOpen: true,
      noDelay: true,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new HboneTimeoutError('the TCP connect', opts.timeoutMs));
    }, opts.timeoutMs);
    timer.unref();
    s.once('connect', () => {
      clearTimeout(timer);
      s.removeAllListeners('error');
      resolve(s);
    });
    s.once('error', (err) => {
      clearTimeout(timer);
      s.destroy();
      reject(err);
    });
  });
}

export interface SocketJoin {
  /** Bytes a -> b and b -> a. */
  readonly aToB: number;
  readonly bToA: number;
  readonly error?: Error;
}

/** Pipes two sockets both ways; a FIN crosses as a FIN; an error on either destroys both. */
export function joinSockets(a: net.Socket, b: net.Socket): Promise<SocketJoin> {
  a.allowHalfOpen = true;
  b.allowHalfOpen = true;
  let error: Error | undefined;
  a.pipe(b);
  b.pipe(a);
  return new Promise((resolve) => {
    let open = 2;
    const closed = (): void => {
      if (--open > 0) return;
      resolve({ aToB: b.bytesWritten, bToA: a.bytesWritten, ...(error ? { error } : {}) });
    };
    for (const [s, other] of [
      [a, b],
      [b, a],
    ] as const) {
      s.once('close', closed);
      s.on('error', (err) => {
        error ??= err;
        other.destroy();
        s.destroy();
      });
    }
  });
}

/** `ip:port` or `[v6]:port` -> parts (host without brackets). */
export function splitHostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(':');
  const host = s.slice(0, i).replace(/^\[(.*)\]$/, '$1');
  return { host, port: Number(s.slice(i + 1)) };
}
