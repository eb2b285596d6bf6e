import type { AddressInfo } from 'node:net';
import * as net from 'node:net';
import { createServer, type HboneServer, type HboneServerOptions, type TunnelHandler } from '@hbone/hbone';
import { MemorySource, StaticSource, X509Bundle, X509Svid } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';
import type { Credentials } from '../src/index.js';

export const TD = 'cluster.local';
export const CLIENT_ID = `spiffe://${TD}/ns/default/sa/client`;
export const serverId = (i: number): string => `spiffe://${TD}/ns/default/sa/server-${i}`;

let caPromise: Promise<TestCa> | undefined;
export function ca(): Promise<TestCa> {
  caPromise ??= TestCa.create(TD);
  return caPromise;
}

export async function sourceFor(id: string): Promise<MemorySource> {
  const c = await ca();
  const minted = await c.mint(id);
  return new MemorySource({
    svid: X509Svid.parse(minted.certChainPem, minted.keyPem),
    bundles: [X509Bundle.fromPem(TD, c.bundlePem)],
  });
}

export async function clientCredentials(): Promise<{ source: MemorySource; credentials: () => Credentials }> {
  const source = await sourceFor(CLIENT_ID);
  return { source, credentials: () => ({ svidSource: source, bundleSource: source }) };
}

/** Accepts, echoes with half-close; errors on the server side are expected in teardown. */
export const echo: TunnelHandler = (t) => {
  const tunnel = t.accept();
  tunnel.on('error', () => {});
  tunnel.pipe(tunnel);
};

export interface TestServer {
  srv: HboneServer;
  port: number;
  id: string;
  /** Server-side HBONE connections accepted so far. */
  accepted: number;
}

export async function startServer(
  i: number,
  handler: TunnelHandler = echo,
  extra: Partial<HboneServerOptions> = {},
): Promise<TestServer> {
  const id = serverId(i);
  const s = await sourceFor(id);
  const srv = createServer({ svidSource: s, bundleSource: s, handler, ...extra });
  const { port } = await srv.listen(0, '127.0.0.1');
  const out: TestServer = { srv, port, id, accepted: 0 };
  srv.on('connection', () => out.accepted++);
  return out;
}

export function keyFor(s: { port: number; id: string }, host = '127.0.0.1') {
  return { source: CLIENT_ID, destinations: [s.id], address: { host, port: s.port } };
}

export async function deadPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

/** Reads a tunnel to its end as text. */
export function readText(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks).toString()));
    stream.once('error', reject);
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export { StaticSource };
