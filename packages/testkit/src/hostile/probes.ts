import * as net from 'node:net';
import { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { HostileTimeoutError } from './peer.js';

/** What a probe saw before the connection ended (or the probe gave up). */
export interface ProbeResult {
  /** Milliseconds from the start of the TCP connect to the close (or to giving up). */
  readonly afterMs: number;
  /** True when the server ended the connection; false when the probe gave up and destroyed it. */
  readonly closedByPeer: boolean;
  /** Bytes received from the server. */
  readonly bytesReceived: number;
  /** The first bytes received (up to 64 KiB). */
  readonly received: Buffer;
  /** The first error the socket reported, if any. */
  readonly error: Error | undefined;
}

export interface TcpProbeOptions {
  host?: string;
  port: number;
  /** Sent once connected: bytes, or a script that writes to the socket itself. */
  send?: Uint8Array | ((socket: net.Socket) => void);
  /** Half-close (FIN) after sending. Default false. */
  end?: boolean;
  /** Give up (destroy the socket) after this long. Default 5 s. */
  timeoutMs?: number;
}

const KEEP_BYTES = 64 * 1024;

/**
 * Raw TCP to a port: send something (or nothing), optionally FIN, and wait for the server to end
 * the connection. The socket is always destroyed before the promise resolves.
 */
export function tcpProbe(opts: TcpProbeOptions): Promise<ProbeResult> {
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 5_000;
  return new Promise((resolve) => {
    const socket = net.connect({ host: opts.host ?? '127.0.0.1', port: opts.port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let bytesReceived = 0;
    let kept = 0;
    let error: Error | undefined;
    let gaveUp = false;
    socket.on('data', (c: Buffer) => {
      bytesReceived += c.length;
      if (kept < KEEP_BYTES) {
        chunks.push(c.subarray(0, KEEP_BYTES - kept));
        kept += Math.min(c.length, KEEP_BYTES - kept);
      }
    });
    // The server's FIN ends the probe too: a half-open probe would otherwise wait for its timeout.
    socket.on('end', () => socket.destroy());
    socket.on('error', (e) => {
      error ??= e;
    });
    const timer = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
    }, timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({
        afterMs: Date.now() - started,
        closedByPeer: !gaveUp,
        bytesReceived,
        received: Buffer.concat(chunks),
        error,
      });
    });
    socket.once('connect', () => {
      if (typeof opts.send === 'function') opts.send(socket);
      else if (opts.send) socket.write(opts.send);
      if (opts.end) socket.end();
    });
  });
}

/** What a TLS probe saw. */
export interface TlsProbeResult extends ProbeResult {
  /** True when the handshake completed from the client's side (TLS 1.3: before the server checked our certificate). */
  readonly secure: boolean;
  /** The negotiated ALPN protocol, when the handshake completed. */
  readonly alpn: string | false | null | undefined;
  /** The negotiated TLS version, when the handshake completed. */
  readonly protocol: string | null | undefined;
}

export interface TlsProbeOptions {
  host?: string;
  port: number;
  /** Options for `tls.connect` (defaults: no server verification). */
  tls?: tls.ConnectionOptions;
  /** Runs once the handshake completes (e.g. write an HTTP/1.1 request). */
  onSecure?: (socket: tls.TLSSocket) => void;
  /** Give up after this long. Default 5 s. */
  timeoutMs?: number;
}

/**
 * A TLS client with whatever options the test wants (TLS 1.2 only, no certificate, other ALPN),
 * waiting for the server to end the connection. Always destroys its socket.
 */
export function tlsProbe(opts: TlsProbeOptions): Promise<TlsProbeResult> {
  const started = Date.now();
  const timeoutMs = opts.timeoutMs ?? 5_000;
  return new Promise((resolve) => {
    const socket = tls.connect({
      host: opts.host ?? '127.0.0.1',
      port: opts.port,
      rejectUnauthorized: false,
      ...opts.tls,
    });
    let bytesReceived = 0;
    const chunks: Buffer[] = [];
    let kept = 0;
    let error: Error | undefined;
    let secure = false;
    let gaveUp = false;
    socket.on('data', (c: Buffer) => {
      bytesReceived += c.length;
      if (kept < KEEP_BYTES) {
        chunks.push(c.subarray(0, KEEP_BYTES - kept));
        kept += Math.min(c.length, KEEP_BYTES - kept);
      }
    });
    socket.on('end', () => socket.destroy());
    socket.on('error', (e) => {
      error ??= e;
    });
    socket.once('secureConnect', () => {
      secure = true;
      opts.onSecure?.(socket);
    });
    const timer = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
    }, timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve({
        afterMs: Date.now() - started,
        closedByPeer: !gaveUp,
        bytesReceived,
        received: Buffer.concat(chunks),
        error,
        secure,
        alpn: secure ? socket.alpnProtocol : undefined,
        protocol: secure ? socket.getProtocol() : undefined,
      });
    });
  });
}

/**
 * The first flight (ClientHello record) `tls.connect` would send with these options, captured
 * without any network: for slowloris tests that send part of a real ClientHello.
 */
export function captureClientHello(options: tls.ConnectionOptions = {}, timeoutMs = 2_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let socket: tls.TLSSocket | undefined;
    const sink = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        clearTimeout(timer);
        resolve(Buffer.from(chunk));
        cb();
        setImmediate(() => {
          socket?.destroy();
          sink.destroy();
        });
      },
    });
    const timer = setTimeout(() => {
      socket?.destroy();
      sink.destroy();
      reject(new HostileTimeoutError('no ClientHello written'));
    }, timeoutMs);
    socket = tls.connect({ rejectUnauthorized: false, ALPNProtocols: ['h2'], ...options, socket: sink });
    socket.on('error', () => {});
  });
}
