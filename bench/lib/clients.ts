/** Client-side dialers for both transports, with the same certificates and TCP_NODELAY. */
import { once } from 'node:events';
import * as http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  CLIENT_SETTINGS,
  connect,
  type HboneClientSession,
  type HboneTunnel,
  INITIAL_CONNECTION_WINDOW_BYTES,
  MAX_SESSION_MEMORY_MB,
  type TunnelRequest,
} from '../../packages/hbone/src/index.js';
import { type Creds, type PemSvid, rawTlsClientOptions, sourcesFor } from './creds.js';

/** A raw mutual TLS 1.3 dialer (the baseline), with its SecureContext built once. */
export function rawTlsDialer(creds: Creds, who: PemSvid = creds.client) {
  const opts = rawTlsClientOptions(creds, who);
  return (port: number): Promise<tls.TLSSocket> =>
    new Promise((resolve, reject) => {
      const s = tls.connect({ ...opts, host: '127.0.0.1', port });
      s.setNoDelay(true);
      s.once('secureConnect', () => {
        s.removeListener('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
}

/** An HBONE dialer expecting `expected` on the other side. */
export function hboneDialer(creds: Creds, expected: string, who: PemSvid = creds.client) {
  const sources = sourcesFor(creds, who);
  return (port: number): Promise<HboneClientSession> =>
    connect({ host: '127.0.0.1', port }, { ...sources, expectedIdentities: [expected] });
}

/** What the benchmarks CONNECT to (the benchmark servers ignore it, as a sink would). */
export const BENCH_REQUEST: TunnelRequest = { authority: '10.0.0.2:8080' };

export async function openTunnel(session: HboneClientSession): Promise<HboneTunnel> {
  const t = await session.open(BENCH_REQUEST);
  t.on('error', () => {});
  return t;
}

/**
 * Bare node:http2 over raw mutual TLS with HBONE's SETTINGS and windows: the reference for what
 * node:http2 itself costs. `open()` sends a CONNECT and resolves with the raw Http2Stream.
 */
export function bareH2Dialer(creds: Creds, who: PemSvid = creds.client) {
  const dialTls = rawTlsDialer(creds, who);
  return async (port: number) => {
    const socket = await dialTls(port);
    const session = http2.connect('https://127.0.0.1', {
      createConnection: () => socket,
      settings: { ...CLIENT_SETTINGS },
      maxSessionMemory: MAX_SESSION_MEMORY_MB,
    });
    session.on('error', () => {});
    await once(session, 'remoteSettings');
    session.setLocalWindowSize(INITIAL_CONNECTION_WINDOW_BYTES);
    const open = (): Promise<http2.ClientHttp2Stream> =>
      new Promise((resolve, reject) => {
        const s = session.request(
          { ':method': 'CONNECT', ':authority': '10.0.0.2:8080' },
          { endStream: false },
        );
        s.once('response', (h) => {
          s.removeListener('close', onClose);
          if (h[':status'] === 200) resolve(s);
          else reject(new Error(`status ${h[':status']}`));
        });
        const onClose = (): void => reject(new Error(`stream closed (${s.rstCode})`));
        s.once('close', onClose);
        s.on('error', () => {});
      });
    return { session, open, close: () => session.destroy() };
  };
}

/** Ends a stream, drains what the peer still sends, and waits (bounded) for it to close. */
export async function closeStream(s: Duplex): Promise<void> {
  if (s.destroyed) return;
  const closed = once(s, 'close').catch(() => {});
  s.resume();
  s.end();
  const timer = setTimeout(() => s.destroy(), 2_000);
  await closed;
  clearTimeout(timer);
}
