/**
 * Real TLS 1.3 on 127.0.0.1 for tests: servers on port 0, a ping/pong exchange that tells whether
 * application bytes crossed, and a tracker that closes every server and socket (idempotently).
 */
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import type * as tls from 'node:tls';

export class Tracker {
  readonly #servers = new Set<tls.Server>();
  readonly #sockets = new Set<tls.TLSSocket>();

  server(server: tls.Server): tls.Server {
    this.#servers.add(server);
    server.on('secureConnection', (s) => this.socket(s));
    server.on('tlsClientError', () => {});
    return server;
  }

  socket<T extends tls.TLSSocket>(socket: T): T {
    this.#sockets.add(socket);
    socket.on('error', () => {});
    socket.once('close', () => this.#sockets.delete(socket));
    return socket;
  }

  async closeAll(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    this.#sockets.clear();
    const servers = [...this.#servers];
    this.#servers.clear();
    await Promise.all(
      servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            if (!s.listening) return resolve();
            s.close(() => resolve());
          }),
      ),
    );
  }
}

export async function listen(server: tls.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as AddressInfo).port;
}

/** Server side of the exchange: answer `ping` with `pong`, then end. */
export function answerPings(socket: tls.TLSSocket): void {
  socket.on('data', (d) => {
    if (String(d).includes('ping')) socket.end('pong');
  });
}

export interface Exchange {
  secure: boolean;
  data: string;
  error: Error | undefined;
}

/** Client side: after the handshake send `ping`; resolve on close with what came back. */
export function exchange(socket: tls.TLSSocket): Promise<Exchange> {
  return new Promise((resolve) => {
    let secure = false;
    let data = '';
    let error: Error | undefined;
    socket.on('secureConnect', () => {
      secure = true;
      socket.write('ping');
    });
    socket.on('data', (d) => {
      data += String(d);
      if (data === 'pong') socket.end();
    });
    socket.on('error', (e) => {
      error ??= e;
    });
    socket.on('close', () => resolve({ secure, data, error }));
  });
}

/** Waits until `cond()` or ~2 s (for server-side events that race the client's close). */
export async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
}
