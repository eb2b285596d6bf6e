/** Messages between the benchmark runner and `bench/server-process.ts` (Node IPC). */
import type { Creds } from './creds.js';

export type Who = 'server' | 'gateway' | 'dest';

export type ListenSpec =
  | { readonly proto: 'tls'; readonly mode: 'sink' | 'echo' | 'hello' | 'hold'; readonly who?: Who }
  /** Bare node:http2 (CONNECT answered 200) over raw mutual TLS: no HBONE code at all. */
  | { readonly proto: 'h2'; readonly mode: 'sink' | 'echo'; readonly who?: Who }
  | {
      readonly proto: 'hbone';
      readonly mode: 'sink' | 'echo' | 'accept' | 'hold';
      readonly who?: Who;
      /** The server's `bufferWrites` option (default: the server's default). */
      readonly bufferWrites?: boolean;
    }
  | { readonly proto: 'hbone'; readonly mode: 'gateway'; readonly who?: Who; readonly routePort: number };

export interface MemorySample {
  readonly rss: number;
  readonly heapUsed: number;
  readonly heapTotal: number;
  readonly external: number;
  readonly arrayBuffers: number;
}

export type Request =
  | { readonly id: number; readonly cmd: 'init'; readonly creds: Creds }
  | { readonly id: number; readonly cmd: 'listen'; readonly spec: ListenSpec }
  | { readonly id: number; readonly cmd: 'close'; readonly port: number }
  | { readonly id: number; readonly cmd: 'memory' }
  | { readonly id: number; readonly cmd: 'counts' }
  | { readonly id: number; readonly cmd: 'cpu' }
  | { readonly id: number; readonly cmd: 'exit' };

export type Reply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

/** `process.cpuUsage()` of the server process, microseconds. */
export interface CpuSample {
  readonly user: number;
  readonly system: number;
}

export interface Counts {
  readonly connections: number;
  readonly tunnels: number;
}

/** GC until the heap stops shrinking (at most 5 passes), then sample. Needs `--expose-gc`. */
export async function settledMemory(): Promise<MemorySample> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  let last = Number.POSITIVE_INFINITY;
  for (let i = 0; i < 5; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 50));
    const used = process.memoryUsage().heapUsed;
    if (used >= last - 1024) break;
    last = used;
  }
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    heapTotal: m.heapTotal,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
  };
}

/** Replies to the parent over IPC; a parent that went away is not an error (children exit on 'disconnect'). */
export function replyToParent(r: Reply): void {
  process.send?.(r, undefined, {}, () => {});
}
