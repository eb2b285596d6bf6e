import type { AddressInfo } from 'node:net';
import * as net from 'node:net';

/**
 * How the proxy treats traffic right now. Switch at any time with `proxy.setMode()`:
 * - 'pass': forward bytes both ways;
 * - 'blackhole': keep connections open but drop every byte both ways (a silently dropped
 *   path: PINGs go unanswered, handshakes stall) and leave new connections unanswered;
 * - 'refuse': close new connections at once (connection refused, as far as a client can tell);
 * - 'reset': reset every live and new connection (TCP RST).
 */
export type FaultMode = 'pass' | 'blackhole' | 'refuse' | 'reset';

export interface FaultProxy {
  readonly port: number;
  readonly host: string;
  /** Live client connections through the proxy. */
  readonly connections: number;
  /** Bytes forwarded each way, for assertions that a hop saw (or did not see) traffic. */
  readonly bytes: { toTarget: number; toClient: number };
  setMode(mode: FaultMode): void;
  /** Every chunk that went client -> target, when created with `record: true`. */
  readonly recorded: Buffer[];
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  target: { host: string; port: number };
  mode?: FaultMode;
  /** Keep a copy of client -> target bytes (bounded by `recordLimitBytes`, default 4 MiB). */
  record?: boolean;
  recordLimitBytes?: number;
}

/**
 * A TCP proxy on 127.0.0.1 for fault injection: put it between an HBONE client and server and
 * switch its mode to make the path fail the ways real networks do. Everything it opens is
 * closed by `close()`.
 */
export async function createFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  let mode: FaultMode = opts.mode ?? 'pass';
  const pairs = new Set<{ client: net.Socket; upstream: net.Socket | undefined }>();
  const bytes = { toTarget: 0, toClient: 0 };
  const recorded: Buffer[] = [];
  const recordLimit = opts.recordLimitBytes ?? 4 * 1024 * 1024;
  let recordedBytes = 0;

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    client.on('error', () => {});
    if (mode === 'refuse' || mode === 'reset') {
      client.resetAndDestroy();
      return;
    }
    const pair: { client: net.Socket; upstream: net.Socket | undefined } = { client, upstream: undefined };
    pairs.add(pair);
    client.once('close', () => {
      pair.upstream?.destroy();
      pairs.delete(pair);
    });
    if (mode === 'blackhole') {
      client.resume(); // read and drop
      return;
    }
    const upstream = net.connect({ ...opts.target, allowHalfOpen: true });
    pair.upstream = upstream;
    upstream.on('error', () => client.destroy());
    upstream.once('close', () => client.destroy());
    client.on('data', (chunk: Buffer) => {
      if (mode !== 'pass') return;
      bytes.toTarget += chunk.length;
      if (opts.record && recordedBytes < recordLimit) {
        recorded.push(Buffer.from(chunk));
        recordedBytes += chunk.length;
      }
      if (!upstream.write(chunk)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (chunk: Buffer) => {
      if (mode !== 'pass') return;
      bytes.toClient += chunk.length;
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;

  return {
    port,
    host: '127.0.0.1',
    get connections() {
      return pairs.size;
    },
    bytes,
    recorded,
    setMode(m: FaultMode) {
      mode = m;
      if (m === 'reset') {
        for (const p of pairs) {
          p.client.resetAndDestroy();
          p.upstream?.resetAndDestroy();
        }
      }
    },
    close() {
      for (const p of pairs) {
        p.client.destroy();
        p.upstream?.destroy();
      }
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
