import * as net from 'node:net';
import * as tls from 'node:tls';
import type { TestCa } from '../ca.js';
import type { MintedSvid } from '../minted-svid.js';
import { CLIENT_PREFACE, settingsFrame } from './frames.js';
import { HostileTimeoutError, RawH2Peer, type RawH2PeerOptions } from './peer.js';

/** PEM credentials for `node:tls` from a minted SVID and its CA (whose root is the trust anchor). */
export interface PeerCredentials {
  cert: string;
  key: string;
  ca: string;
}

export function peerCredentials(svid: MintedSvid, ca: TestCa): PeerCredentials {
  return { cert: svid.certChainPem, key: svid.keyPem, ca: ca.bundlePem };
}

export interface RawH2ClientOptions extends RawH2PeerOptions {
  host?: string;
  port: number;
  /**
   * TLS options, merged over the defaults: ALPN `h2`, no server verification (a hostile client
   * does not care who answers), TLS 1.3 allowed. Pass `cert`/`key` to present a certificate.
   */
  tls?: tls.ConnectionOptions;
  /** Send the preface and a SETTINGS frame once TLS is up. Default true. */
  preface?: boolean;
  /** The SETTINGS sent after the preface. Default none (an empty SETTINGS frame). */
  settings?: ReadonlyArray<readonly [number, number]>;
  /** TCP + TLS deadline. Default 5 s. */
  connectTimeoutMs?: number;
}

/**
 * A raw HTTP/2 client over TLS: `RawH2Client.connect()` resolves once TLS is up (and the preface
 * and SETTINGS are written). It keeps the plain TCP socket too, so a test can send a bare FIN
 * (`tcp.end()`) or an RST (`tcp.resetAndDestroy()`) under the TLS layer.
 */
export class RawH2Client extends RawH2Peer {
  readonly tcp: net.Socket;
  readonly tlsSocket: tls.TLSSocket;

  private constructor(tcp: net.Socket, socket: tls.TLSSocket, opts: RawH2PeerOptions) {
    super(socket, 'client', opts);
    this.tcp = tcp;
    this.tlsSocket = socket;
  }

  static connect(opts: RawH2ClientOptions): Promise<RawH2Client> {
    const host = opts.host ?? '127.0.0.1';
    const timeoutMs = opts.connectTimeoutMs ?? 5_000;
    return new Promise((resolve, reject) => {
      const tcp = net.connect({ host, port: opts.port, allowHalfOpen: true });
      tcp.on('error', () => {}); // reported by the TLS socket
      const socket = tls.connect({
        ALPNProtocols: ['h2'],
        rejectUnauthorized: false,
        ...opts.tls,
        socket: tcp,
      });
      const timer = setTimeout(() => {
        fail(new HostileTimeoutError(`TLS to ${host}:${opts.port} not up within ${timeoutMs} ms`));
      }, timeoutMs);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        socket.destroy();
        tcp.destroy();
        reject(err);
      };
      socket.once('error', fail);
      socket.once('close', () => fail(new Error('connection closed during the TLS handshake')));
      socket.once('secureConnect', () => {
        clearTimeout(timer);
        socket.removeListener('error', fail);
        socket.removeAllListeners('close');
        const client = new RawH2Client(tcp, socket, opts);
        if (opts.preface ?? true) client.send(CLIENT_PREFACE, settingsFrame(opts.settings ?? []));
        resolve(client);
      });
    });
  }

  override destroy(): void {
    super.destroy();
    this.tcp.destroy();
  }
}
