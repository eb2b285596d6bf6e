import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { TestCa } from '@hbone/testkit';
import type { Identity } from './identity.js';
import { identityFromMinted } from './identity.js';

export type { Identity };

/** One CA per trust domain, created once per test file. */
const cas = new Map<string, Promise<TestCa>>();
export function caFor(trustDomain: string): Promise<TestCa> {
  const known = cas.get(trustDomain);
  if (known) return known;
  const ca = TestCa.create(trustDomain);
  cas.set(trustDomain, ca);
  return ca;
}

/** Mints an SVID for `id` and returns the sources our client/server options take. */
export async function identity(id: string, opts: { federate?: TestCa[] } = {}): Promise<Identity> {
  const td = new URL(id).host;
  const ca = await caFor(td);
  const minted = await ca.mint(id);
  return identityFromMinted(minted, [ca, ...(opts.federate ?? [])]);
}

export function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

export function payload(size: number): Buffer {
  return randomBytes(size);
}

/** Reads a stream to its end; rejects on error. */
export function readAll(stream: Duplex): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** What a TCP test server does with a connection: see tcpServer(). */
export type TcpServerMode = 'echo' | 'stalled' | 'talker';

export interface TcpServer {
  port: number;
  /** Its connections still open. */
  sockets: Set<net.Socket>;
  /** How many connections it accepted so far. */
  accepted: () => number;
  /** Destroys the open connections and closes the server. */
  close: () => Promise<void>;
}

/**
 * A TCP server on `host` (127.0.0.1 by default) with half-close, tracking its sockets. 'echo' echoes, then FINs
 * after the client FINs; 'stalled' never reads; 'talker' reads and discards while sending 16 KiB
 * every 5 ms for as long as it is connected.
 */
export async function tcpServer(mode: TcpServerMode, host = '127.0.0.1'): Promise<TcpServer> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    if (mode === 'stalled') s.pause();
    else if (mode === 'echo') s.pipe(s);
    else {
      s.resume();
      const timer = setInterval(() => s.write(Buffer.alloc(16 * 1024, 0x74)), 5);
      s.on('close', () => clearInterval(timer));
    }
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    sockets,
    accepted: () => accepted,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A TCP echo server on 127.0.0.1 with half-close: echoes, then FINs after the client FINs. */
export function echoServer(): Promise<TcpServer> {
  return tcpServer('echo');
}

/**
 * Polls `read()` every `pollMs` until its value stays put for `quietMs` (or `maxMs` passes);
 * returns the last value.
 */
export async function settle(
  read: () => number,
  { quietMs = 300, maxMs = 5_000, pollMs = 50 }: { quietMs?: number; maxMs?: number; pollMs?: number } = {},
): Promise<number> {
  const started = Date.now();
  let last = read();
  let since = Date.now();
  while (Date.now() - started < maxMs) {
    await new Promise((r) => setTimeout(r, pollMs));
    const now = read();
    if (now !== last) {
      last = now;
      since = Date.now();
    } else if (Date.now() - since >= quietMs) break;
  }
  return last;
}

/** A port with nothing listening (bound then closed). */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
