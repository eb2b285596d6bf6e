import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import { settingsFrame } from './frames.js';
import { RawH2Peer, type RawH2PeerOptions } from './peer.js';

export interface RawH2ServerOptions extends RawH2PeerOptions {
  /**
   * TLS options (`cert`, `key`, `ca`, ...), merged over: ALPN `h2`, a client certificate asked
   * for but not verified (the hostile server is the attacker, not the judge).
   */
  tls: tls.TlsOptions;
  /** The SETTINGS sent when a client connects. Default none (an empty SETTINGS frame). */
  settings?: ReadonlyArray<readonly [number, number]>;
  /** Called with each connection once TLS is up and our SETTINGS are written. */
  onConnection: (peer: RawH2Peer) => void;
}

/**
 * A raw HTTP/2 server over TLS, for testing clients against servers that misbehave. Every
 * connection is a `RawH2Peer` in the server role (it checks the client preface). `close()`
 * destroys every connection.
 */
export class RawH2Server {
  readonly #server: tls.Server;
  readonly #peers = new Set<RawH2Peer>();
  readonly #sockets = new Set<tls.TLSSocket>();

  constructor(opts: RawH2ServerOptions) {
    this.#server = tls.createServer({
      ALPNProtocols: ['h2'],
      requestCert: true,
      rejectUnauthorized: false,
      ...opts.tls,
    });
    this.#server.on('tlsClientError', (_err, socket) => socket.destroy());
    this.#server.on('secureConnection', (socket: tls.TLSSocket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
      const peer = new RawH2Peer(socket, 'server', opts);
      this.#peers.add(peer);
      void peer.closed.then(() => this.#peers.delete(peer));
      peer.send(settingsFrame(opts.settings ?? []));
      opts.onConnection(peer);
    });
  }

  listen(port = 0, host = '127.0.0.1'): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(port, host, () => {
        this.#server.removeListener('error', reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** Live connections. */
  get peers(): ReadonlySet<RawH2Peer> {
    return this.#peers;
  }

  close(): Promise<void> {
    for (const p of this.#peers) p.destroy();
    for (const s of this.#sockets) s.destroy();
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }
}
