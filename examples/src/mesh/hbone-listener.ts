/**
 * A TCP listener in front of an `HboneServer`: it reads the TLS ClientHello without terminating
 * TLS (`readClientHello`), keeps what it says (SNI, ALPN) for logs and the hop table, lets the
 * owner refuse the connection on it (SNI routing at a gateway), then hands the untouched socket
 * to the HBONE server (`acceptConnection`). Binds one address; never the wildcard.
 */
import * as net from 'node:net';
import { type ClientHelloInfo, type HboneServer, readClientHello } from '@hbone/hbone';

export interface HelloFacts {
  readonly sni: string | undefined;
  readonly alpn: readonly string[];
}

export interface HboneListenerOptions {
  readonly host: string;
  readonly port: number;
  readonly server: HboneServer;
  /** Return a reason to refuse the connection before TLS (it is then closed). */
  readonly check?: (hello: ClientHelloInfo, socket: net.Socket) => string | undefined;
  /** Told about refused connections (bad ClientHello, or `check` said no). */
  readonly onRefused?: (reason: string, socket: net.Socket, hello: ClientHelloInfo | undefined) => void;
  /** ClientHello wait. Default 5 s. */
  readonly helloTimeoutMs?: number;
}

export class HboneListener {
  readonly host: string;
  #port: number;
  readonly #tcp: net.Server;
  readonly #sockets = new Set<net.Socket>();
  /** `remoteAddress:remotePort` -> what the ClientHello said. */
  readonly #hellos = new Map<string, HelloFacts>();
  #closing: Promise<void> | undefined;

  private constructor(opts: HboneListenerOptions, tcp: net.Server) {
    this.host = opts.host;
    this.#port = opts.port;
    this.#tcp = tcp;
  }

  static async listen(opts: HboneListenerOptions): Promise<HboneListener> {
    const tcp = net.createServer({ pauseOnConnect: true, noDelay: true });
    const l = new HboneListener(opts, tcp);
    tcp.on('connection', (socket: net.Socket) => l.#onConnection(socket, opts));
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject);
      tcp.listen(opts.port, opts.host, () => {
        tcp.removeListener('error', reject);
        resolve();
      });
    });
    l.#port = (tcp.address() as net.AddressInfo).port;
    return l;
  }

  get port(): number {
    return this.#port;
  }

  /** What the ClientHello of the connection from `addr:port` said, while it is open. */
  hello(remoteAddress: string | undefined, remotePort: number | undefined): HelloFacts | undefined {
    return this.#hellos.get(`${remoteAddress}:${remotePort}`);
  }

  #onConnection(socket: net.Socket, opts: HboneListenerOptions): void {
    this.#sockets.add(socket);
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    socket.once('close', () => {
      this.#sockets.delete(socket);
      this.#hellos.delete(key);
    });
    socket.on('error', () => {});
    readClientHello(socket, { timeoutMs: opts.helloTimeoutMs ?? 5000 }).then(
      (hello) => {
        if (socket.destroyed) return;
        const reason = opts.check?.(hello, socket);
        if (reason !== undefined) {
          opts.onRefused?.(reason, socket, hello);
          socket.destroy();
          return;
        }
        this.#hellos.set(key, { sni: hello.sni, alpn: hello.alpn });
        socket.removeAllListeners('error');
        opts.server.acceptConnection(socket);
      },
      (err: unknown) => {
        opts.onRefused?.(`no valid TLS ClientHello: ${(err as Error).message}`, socket, undefined);
        socket.destroy();
      },
    );
  }

  /** Stops accepting and destroys connections not yet handed over. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#tcp.close(() => resolve());
      for (const s of this.#sockets) s.destroy();
    });
    return this.#closing;
  }
}
