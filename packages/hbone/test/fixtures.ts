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

/** A TCP echo server on 127.0.0.1 with half-close: echoes, then FINs after the client FINs. */
export async function echoServer(): Promise<{
  port: number;
  close: () => Promise<void>;
  sockets: Set<net.Socket>;
}> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A port with nothing listening (bound then closed). */
export async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}
