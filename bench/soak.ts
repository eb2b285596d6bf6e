/**
 * `pnpm soak [--seconds N] [--servers N] [--concurrency N] [--seed N]`: a bounded soak of the
 * HBONE client, pools and servers with faults, checking that nothing is lost and nothing leaks.
 *
 * - The servers (3-4 HBONE servers, each with a fault proxy in front) run in a CHILD process
 *   (this file with `--child`), driven over Node IPC: restart (graceful `close()` and a new server
 *   on the same port), crash (`destroy()` and a new server on the same port), kill (the fault
 *   proxy resets every connection through it), server certificate rotation.
 * - This process runs two pools (two client identities) and `--concurrency` workers doing random
 *   operations against every server, directly and through its proxy:
 *   echo (client half-closes first), bidi (download and upload at once, half-closes in both
 *   orders, server-generated data carried with its sha256), client resets, server resets,
 *   denied CONNECTs; plus client certificate rotation.
 * - Every completed transfer is checked by sha256 end to end (uploads are also checked by the
 *   server); every failure must be one of our typed errors (`HboneError`, `PoolError`) and is
 *   counted by code; a failure with no fault on its server around it is "unexplained".
 * - At the end everything is closed (pools, child) and the client process must be back to its
 *   baseline: `process.getActiveResourcesInfo()`, plus every handle, socket and timer (ref'd or
 *   not) tracked from creation to destruction with async_hooks.
 *
 * Prints ONE JSON summary on stdout (progress on stderr). Exits non-zero on a hash mismatch, an
 * untyped error, a wrong outcome (e.g. a reset read as a clean end), a stall, an unexplained
 * failure, or a leak.
 */
import { createHook } from 'node:async_hooks';
import { type ChildProcess, fork } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import { loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import {
  createServer,
  H2_CODES,
  HboneError,
  type HboneServer,
  type HboneTunnel,
  h2CodeName,
  type IncomingTunnel,
  StreamResetError,
} from '../packages/hbone/src/index.js';
import { createPool, type HbonePool, PoolError, type PoolKey } from '../packages/pool/src/index.js';
import { MemorySource, X509Bundle, X509Svid } from '../packages/spiffe/src/index.js';
import { createFaultProxy, type FaultProxy, TestCa } from '../packages/testkit/src/index.js';

const TD = 'cluster.local';
const serverId = (i: number): string => `spiffe://${TD}/ns/soak/sa/server-${i}`;
const clientId = (p: number): string => `spiffe://${TD}/ns/soak/sa/client-${p}`;

/** Application ports in `:authority`: they select what the server does with the tunnel. */
const PORT = { echo: 7, bidi: 19, serverReset: 13, denied: 403 } as const;
/** bidi header: download size (u64), upload size (u64), sha256 of the upload. */
const BIDI_HEADER = 48;
const MiB = 1024 * 1024;
const MAX_TRANSFER = 4 * MiB;
/** Bytes of random data both processes slice transfers from. */
const DATA_POOL = 16 * MiB;
/** An operation that takes longer than this has stalled (a bug: every wait is bounded). */
const OP_TIMEOUT_MS = 30_000;
/** A fault on a server explains failures of operations that overlap [t - this, t + this]. */
const FAULT_WINDOW_MS = 8_000;

// ---------------------------------------------------------------------------------------------
// Shared helpers

type Rng = () => number;

/** mulberry32: a small seeded PRNG, so a run's choices can be repeated with `--seed`. */
function rngFrom(seed: number): Rng {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const intBelow = (rng: Rng, n: number): number => Math.floor(rng() * n);

/** 0 now and then, otherwise log-uniform in 1 B .. MAX_TRANSFER: many small, some large. */
function pickSize(rng: Rng): number {
  if (rng() < 0.05) return 0;
  return Math.min(MAX_TRANSFER, Math.floor(2 ** (rng() * Math.log2(MAX_TRANSFER))));
}

function pickWeighted<T extends string>(rng: Rng, weights: Readonly<Record<T, number>>): T {
  const entries = Object.entries(weights) as Array<[T, number]>;
  let r = rng() * entries.reduce((s, [, w]) => s + w, 0);
  for (const [k, w] of entries) {
    r -= w;
    if (r < 0) return k;
  }
  return entries[entries.length - 1]![0];
}

function slice(pool: Buffer, rng: Rng, size: number): Buffer {
  const off = intBelow(rng, pool.length - size + 1);
  return pool.subarray(off, off + size);
}

const cpuSeconds = (u: NodeJS.CpuUsage): number => Math.round((u.user + u.system) / 1e4) / 100;
const sha256 = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Resolves on 'drain' or 'close', whichever comes first. */
function drainOrClose(s: HboneTunnel): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    s.once('drain', done);
    s.once('close', done);
  });
}

/** Writes `data` in chunks of random sizes with backpressure; false if the tunnel went away. */
async function writeChunks(t: HboneTunnel, data: Buffer, rng: Rng): Promise<boolean> {
  let off = 0;
  while (off < data.length) {
    if (t.destroyed || t.writableEnded) return false;
    const n = Math.min(data.length - off, 1 + intBelow(rng, 256 * 1024));
    const ok = t.write(data.subarray(off, off + n));
    off += n;
    if (!ok) await drainOrClose(t);
  }
  return !t.destroyed && !t.writableEnded;
}

// ---------------------------------------------------------------------------------------------
// Child: the servers

type ChildRequest =
  | {
      readonly id: number;
      readonly cmd: 'init';
      readonly bundlePem: string;
      readonly servers: ReadonlyArray<{ readonly certPem: string; readonly keyPem: string }>;
    }
  | { readonly id: number; readonly cmd: 'restart'; readonly i: number; readonly how: 'graceful' | 'crash' }
  | { readonly id: number; readonly cmd: 'kill'; readonly i: number }
  | {
      readonly id: number;
      readonly cmd: 'rotate';
      readonly i: number;
      readonly certPem: string;
      readonly keyPem: string;
    }
  | { readonly id: number; readonly cmd: 'stats' }
  | { readonly id: number; readonly cmd: 'exit' };

type ChildReply =
  | { readonly id: number; readonly ok: true; readonly value: unknown }
  | { readonly id: number; readonly ok: false; readonly error: string };

interface ChildStats {
  tunnels: number;
  uploadsVerified: number;
  uploadMismatches: number;
  downloads: number;
  serverResets: number;
  handlerErrors: number;
  connections: number;
  /** Graceful drains that finished, and how long the longest took (ms). */
  drainsFinished: number;
  maxDrainMs: number;
  rssMiB: number;
  cpuSeconds: number;
}

async function runChild(): Promise<void> {
  const data = randomFillSync(Buffer.allocUnsafe(DATA_POOL));
  const rng = rngFrom(0x5eed);
  const stats: ChildStats = {
    tunnels: 0,
    uploadsVerified: 0,
    uploadMismatches: 0,
    downloads: 0,
    serverResets: 0,
    handlerErrors: 0,
    connections: 0,
    drainsFinished: 0,
    maxDrainMs: 0,
    rssMiB: 0,
    cpuSeconds: 0,
  };
  interface Slot {
    source: MemorySource;
    srv: HboneServer;
    port: number;
    proxy: FaultProxy;
  }
  const slots: Slot[] = [];
  const closing = new Set<Promise<void>>();

  const serveBidi = (tun: HboneTunnel): void => {
    let header = Buffer.alloc(0);
    let upload: { size: number; sha: Buffer; got: number; hash: ReturnType<typeof createHash> } | undefined;
    tun.on('data', (chunk: Buffer) => {
      if (!upload) {
        header = Buffer.concat([header, chunk]);
        if (header.length < BIDI_HEADER) return;
        const down = Number(header.readBigUInt64BE(0));
        upload = {
          size: Number(header.readBigUInt64BE(8)),
          sha: header.subarray(16, 48),
          got: 0,
          hash: createHash('sha256'),
        };
        chunk = header.subarray(BIDI_HEADER);
        void sendDownload(tun, down);
      }
      upload.got += chunk.length;
      upload.hash.update(chunk);
    });
    tun.on('end', () => {
      if (!upload) return;
      if (upload.got === upload.size && upload.hash.digest().equals(upload.sha)) stats.uploadsVerified++;
      else stats.uploadMismatches++;
    });
  };

  const sendDownload = async (tun: HboneTunnel, size: number): Promise<void> => {
    const body = slice(data, rng, size);
    let off = 0;
    while (off < body.length) {
      if (tun.destroyed || tun.writableEnded) return;
      const n = Math.min(body.length - off, 16 * 1024 + intBelow(rng, 240 * 1024));
      const ok = tun.write(body.subarray(off, off + n));
      off += n;
      if (!ok) await drainOrClose(tun);
    }
    if (tun.destroyed || tun.writableEnded) return;
    stats.downloads++;
    tun.end(sha256(body));
  };

  const handler = (t: IncomingTunnel): void => {
    stats.tunnels++;
    switch (t.authority.port) {
      case PORT.echo: {
        const tun = t.accept();
        tun.on('error', () => {});
        tun.pipe(tun);
        return;
      }
      case PORT.bidi: {
        const tun = t.accept();
        tun.on('error', () => {});
        serveBidi(tun);
        return;
      }
      case PORT.serverReset: {
        const tun = t.accept();
        tun.on('error', () => {});
        const after = 1 + intBelow(rng, 512 * 1024);
        let got = 0;
        tun.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= after && !tun.destroyed) {
            stats.serverResets++;
            tun.reset(H2_CODES.CONNECT_ERROR);
          }
        });
        return;
      }
      default:
        t.reject(403);
    }
  };

  const start = async (source: MemorySource, port: number): Promise<{ srv: HboneServer; port: number }> => {
    const srv = createServer({ svidSource: source, bundleSource: source, handler });
    srv.on('clientError', () => {});
    srv.on('handlerError', () => stats.handlerErrors++);
    srv.on('connection', () => stats.connections++);
    for (let attempt = 0; ; attempt++) {
      try {
        const addr = await srv.listen(port, '127.0.0.1');
        return { srv, port: addr.port };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 50) throw err;
        await sleep(20);
      }
    }
  };

  const retire = (srv: HboneServer, how: 'graceful' | 'crash'): void => {
    const t0 = Date.now();
    const p = (how === 'graceful' ? srv.close() : srv.destroy()).then(() => {
      if (how === 'graceful') {
        stats.drainsFinished++;
        stats.maxDrainMs = Math.max(stats.maxDrainMs, Date.now() - t0);
      }
    });
    closing.add(p);
    void p.finally(() => closing.delete(p));
  };

  const handle = async (req: ChildRequest): Promise<unknown> => {
    switch (req.cmd) {
      case 'init': {
        const bundle = X509Bundle.fromPem(TD, req.bundlePem);
        for (const s of req.servers) {
          const source = new MemorySource({ svid: X509Svid.parse(s.certPem, s.keyPem), bundles: [bundle] });
          const { srv, port } = await start(source, 0);
          const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port } });
          slots.push({ source, srv, port, proxy });
        }
        return slots.map((s) => ({ port: s.port, proxyPort: s.proxy.port }));
      }
      case 'restart': {
        const slot = slots[req.i]!;
        // The listener closes at once (the port is free); the old server drains in the background.
        retire(slot.srv, req.how);
        slot.srv = (await start(slot.source, slot.port)).srv;
        return null;
      }
      case 'kill': {
        const proxy = slots[req.i]!.proxy;
        proxy.setMode('reset');
        await sleep(20);
        proxy.setMode('pass');
        return null;
      }
      case 'rotate':
        slots[req.i]!.source.setX509Svid(X509Svid.parse(req.certPem, req.keyPem));
        return null;
      case 'stats':
        stats.rssMiB = Math.round(process.memoryUsage().rss / MiB);
        stats.cpuSeconds = cpuSeconds(process.cpuUsage());
        return stats;
      case 'exit':
        for (const s of slots) {
          await s.srv.destroy();
          await s.proxy.close();
        }
        await Promise.all([...closing]);
        setImmediate(() => process.exit(0));
        return stats;
    }
  };

  process.on('message', (req: ChildRequest) => {
    handle(req).then(
      (value) => process.send?.({ id: req.id, ok: true, value } satisfies ChildReply),
      (err: unknown) =>
        process.send?.({
          id: req.id,
          ok: false,
          error: String((err as Error)?.stack ?? err),
        } satisfies ChildReply),
    );
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.({ id: 0, ok: true, value: 'ready' } satisfies ChildReply);
}

// ---------------------------------------------------------------------------------------------
// Parent: resource tracking

/** Live async resources by id (every type but promises), from async_hooks init/destroy. */
class ResourceTracker {
  readonly #live = new Map<number, string>();
  readonly #hook = createHook({
    init: (asyncId, type, _trigger, resource) => {
      if (TRANSIENT.has(type)) return;
      let what = type;
      if (type === 'Timeout') {
        const t = resource as { _onTimeout?: { name?: string }; _idleTimeout?: number; _repeat?: unknown };
        what = `Timeout(${t._onTimeout?.name || 'anonymous'}, ${t._idleTimeout} ms${t._repeat ? ', repeat' : ''})`;
      }
      this.#live.set(asyncId, what);
    },
    destroy: (asyncId) => {
      this.#live.delete(asyncId);
    },
  });

  enable(): void {
    this.#hook.enable();
  }

  disable(): void {
    this.#hook.disable();
  }

  /** Live resources by description; transient ones (ticks, immediates) left out. */
  snapshot(): Map<string, number> {
    const out = new Map<string, number>();
    for (const what of this.#live.values()) {
      if (TRANSIENT.has(what)) continue;
      out.set(what, (out.get(what) ?? 0) + 1);
    }
    return out;
  }
}

/** Resources that come and go within a tick or two: never a leak by themselves. */
const TRANSIENT = new Set(['TickObject', 'Immediate', 'Microtask', 'PROMISE']);

function activeResources(): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) out.set(r, (out.get(r) ?? 0) + 1);
  return out;
}

/** What grew from `base` to `now`, as "type: +n (base -> now)". */
function growth(base: Map<string, number>, now: Map<string, number>, prefix: string): string[] {
  const out: string[] = [];
  for (const [k, n] of now) {
    const b = base.get(k) ?? 0;
    if (n > b) out.push(`${prefix}${k}: +${n - b} (${b} -> ${n})`);
  }
  return out;
}

function gcFunction(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Lets queued destroy hooks and closes run, then collects garbage (some natives die on GC). */
async function settle(gc: () => void): Promise<void> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
  }
}

// ---------------------------------------------------------------------------------------------
// Parent: the client side

interface Args {
  seconds: number;
  servers: number;
  concurrency: number;
  seed: number;
  faultEveryMs: number;
  /** async_hooks tracking of every handle and timer (slower); off: getActiveResourcesInfo only. */
  track: boolean;
  faults: boolean;
}

function parseArgs(argv: readonly string[]): Args {
  const a: Args = {
    seconds: 60,
    servers: 4,
    concurrency: 24,
    seed: Date.now() % 2 ** 31,
    faultEveryMs: 2_500,
    track: true,
    faults: true,
  };
  const num = (name: string, v: string | undefined, min: number, max: number): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < min || n > max)
      throw new Error(`${name} must be a number in ${min}..${max}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split('=', 2) as [string, string | undefined];
    const value = (): string | undefined => inline ?? argv[++i];
    switch (flag) {
      case '--seconds':
        a.seconds = num('--seconds', value(), 1, 24 * 3600);
        break;
      case '--servers':
        a.servers = num('--servers', value(), 1, 16);
        break;
      case '--concurrency':
        a.concurrency = num('--concurrency', value(), 1, 1000);
        break;
      case '--seed':
        a.seed = num('--seed', value(), 0, 2 ** 31);
        break;
      case '--fault-every-ms':
        a.faultEveryMs = num('--fault-every-ms', value(), 100, 3_600_000);
        break;
      case '--no-track':
        a.track = false;
        break;
      case '--no-faults':
        a.faults = false;
        break;
      case '--help':
      case '-h':
        process.stderr.write(
          'usage: pnpm soak [--seconds 60] [--servers 4] [--concurrency 24] [--seed N] [--fault-every-ms 2500] [--no-faults] [--no-track]\n',
        );
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${argv[i]} (try --help)`);
    }
  }
  return a;
}

class ServerProcess {
  readonly #child: ChildProcess;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 1;
  readonly ready: Promise<void>;
  readonly exited: Promise<number | null>;

  constructor() {
    this.#child = fork(fileURLToPath(import.meta.url), ['--child'], {
      execArgv: process.execArgv,
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    });
    this.exited = new Promise((r) => this.#child.once('exit', (code) => r(code)));
    this.ready = new Promise((resolve, reject) => {
      this.#pending.set(0, { resolve: () => resolve(), reject });
    });
    this.#child.on('message', (m: ChildReply) => {
      const p = this.#pending.get(m.id);
      this.#pending.delete(m.id);
      if (!p) return;
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(`server process: ${m.error}`));
    });
    this.#child.once('exit', (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`server process exited (${code})`));
      this.#pending.clear();
    });
  }

  request<T>(req: DistributiveOmit<ChildRequest, 'id'>): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.#child.send({ ...req, id });
    });
  }
}

type DistributiveOmit<T, K extends keyof T> = T extends unknown ? Omit<T, K> : never;

type OpKind = 'echo' | 'bidi' | 'clientReset' | 'serverReset' | 'denied';
const OP_WEIGHTS: Readonly<Record<OpKind, number>> = {
  echo: 40,
  bidi: 35,
  clientReset: 12,
  serverReset: 8,
  denied: 5,
};

type FaultKind = 'restart' | 'crash' | 'kill' | 'rotateClient' | 'rotateServer';
const FAULT_WEIGHTS: Readonly<Record<FaultKind, number>> = {
  restart: 30,
  crash: 10,
  kill: 25,
  rotateClient: 20,
  rotateServer: 15,
};

interface Target {
  readonly pool: number;
  readonly server: number;
  readonly viaProxy: boolean;
}

interface FaultEvent {
  readonly kind: FaultKind;
  readonly server: number;
  readonly at: number;
}

/** What an operation came to. */
type Outcome =
  | { readonly ok: true; readonly bytes: number }
  | {
      readonly ok: false;
      readonly code: string;
      readonly fatal?: 'mismatch' | 'untyped' | 'wrong' | 'stall';
      readonly detail?: string;
    };

function classify(err: unknown): Outcome {
  if (err instanceof StreamResetError) return { ok: false, code: `${err.code}(${h2CodeName(err.h2Code)})` };
  if (err instanceof HboneError || err instanceof PoolError) return { ok: false, code: err.code };
  const e = err as NodeJS.ErrnoException;
  return { ok: false, code: `UNTYPED ${e?.code ?? e?.name}: ${e?.message ?? String(err)}`, fatal: 'untyped' };
}

/** Follows a tunnel to its 'close': whether its readable side ended, and its first error. */
function followTunnel(
  t: HboneTunnel,
  onData: (c: Buffer) => void,
): Promise<{ ended: boolean; error?: Error }> {
  return new Promise((resolve) => {
    let ended = false;
    let error: Error | undefined;
    t.on('data', onData);
    t.once('end', () => {
      ended = true;
    });
    t.on('error', (err) => {
      error ??= err;
    });
    t.once('close', () => resolve(error ? { ended, error } : { ended }));
  });
}

async function bounded<T>(p: Promise<T>, t: HboneTunnel): Promise<T | 'stall'> {
  let timer: NodeJS.Timeout | undefined;
  const stall = new Promise<'stall'>((r) => {
    timer = setTimeout(() => r('stall'), OP_TIMEOUT_MS);
  });
  try {
    const r = await Promise.race([p, stall]);
    if (r === 'stall') t.destroy();
    return r;
  } finally {
    clearTimeout(timer);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const log = (msg: string): void => void process.stderr.write(`[soak] ${msg}\n`);
  const gc = gcFunction();
  const rng = rngFrom(args.seed);
  const clientData = randomFillSync(Buffer.allocUnsafe(DATA_POOL));

  const ca = await TestCa.create(TD);
  const bundle = X509Bundle.fromPem(TD, ca.bundlePem);
  const mintSvid = async (id: string): Promise<X509Svid> => {
    const m = await ca.mint(id);
    return X509Svid.parse(m.certChainPem, m.keyPem);
  };
  const serverMints = await Promise.all(Array.from({ length: args.servers }, (_, i) => ca.mint(serverId(i))));
  const clientSources = await Promise.all(
    [0, 1].map(async (p) => new MemorySource({ svid: await mintSvid(clientId(p)), bundles: [bundle] })),
  );

  // Baseline: everything this process needs before the first pool, child or socket.
  const loopDelay = monitorEventLoopDelay({ resolution: 10 }); // ours: part of the baseline
  const tracker = new ResourceTracker();
  if (args.track) tracker.enable();
  await settle(gc);
  const baseTracked = tracker.snapshot();
  const baseActive = activeResources();

  const child = new ServerProcess();
  await child.ready;
  const addrs = await child.request<Array<{ port: number; proxyPort: number }>>({
    cmd: 'init',
    bundlePem: ca.bundlePem,
    servers: serverMints.map((m) => ({ certPem: m.certChainPem, keyPem: m.keyPem })),
  });

  const pools: HbonePool[] = clientSources.map((source) =>
    createPool({
      credentials: () => ({ svidSource: source, bundleSource: source }),
      config: { idleTimeoutMs: 3_000, backoffInitialMs: 50, backoffMaxMs: 1_000, closeDeadlineMs: 5_000 },
      clientOptions: { pingIntervalMs: 2_000, pingTimeoutMs: 5_000 },
    }),
  );
  const keyOf = (t: Target): PoolKey => {
    const a = addrs[t.server]!;
    return {
      source: clientId(t.pool),
      destinations: [serverId(t.server)],
      address: { host: '127.0.0.1', port: t.viaProxy ? a.proxyPort : a.port },
    };
  };

  // Results.
  const okByKind: Record<OpKind, number> = { echo: 0, bidi: 0, clientReset: 0, serverReset: 0, denied: 0 };
  const failedByCode: Record<string, number> = {};
  const fatal: Array<{
    kind: OpKind;
    target: Target;
    code: string;
    fatal: string;
    detail?: string;
    startedAt: number;
    endedAt: number;
    faultsNear: string[];
  }> = [];
  const unexplained: Array<{
    kind: OpKind;
    target: Target;
    code: string;
    startedAt: number;
    endedAt: number;
  }> = [];
  const openLatencies: number[] = [];
  /** The slowest successful opens, for a look at what made them slow (faults nearby?). */
  const slowOpens: Array<{ ms: number; target: Target; at: number; faultsNear: string[] }> = [];
  const faults: FaultEvent[] = [];
  const faultCounts: Record<FaultKind, number> = {
    restart: 0,
    crash: 0,
    kill: 0,
    rotateClient: 0,
    rotateServer: 0,
  };
  let bytes = 0;
  let ops = 0;

  const explained = (t: Target, from: number, to: number): boolean =>
    faults.some(
      (f) =>
        f.server === t.server &&
        (f.kind === 'restart' || f.kind === 'crash' || (f.kind === 'kill' && t.viaProxy)) &&
        f.at >= from - FAULT_WINDOW_MS &&
        f.at <= to + 1_000,
    );

  const open = async (t: Target, port: number): Promise<HboneTunnel> => {
    const t0 = performance.now();
    const tunnel = await pools[t.pool]!.open(keyOf(t), { authority: `10.0.${t.server}.1:${port}` });
    const ms = performance.now() - t0;
    openLatencies.push(ms);
    if (slowOpens.length < 5 || ms > slowOpens[slowOpens.length - 1]!.ms) {
      const at = Date.now() - startedAt;
      const faultsNear = faults
        .filter((f) => f.server === t.server && f.at - startedAt >= at - ms - 1_000 && f.at - startedAt <= at)
        .map((f) => `${f.kind}@${f.at - startedAt}`);
      slowOpens.push({ ms: Math.round(ms), target: t, at, faultsNear });
      slowOpens.sort((a, b) => b.ms - a.ms);
      slowOpens.length = Math.min(slowOpens.length, 5);
    }
    return tunnel;
  };

  /** echo: the client sends and half-closes first; the echo must match byte for byte. */
  const opEcho = async (t: Target, r: Rng): Promise<Outcome> => {
    const body = slice(clientData, r, pickSize(r));
    const tunnel = await open(t, PORT.echo);
    const h = createHash('sha256');
    let got = 0;
    const done = followTunnel(tunnel, (c) => {
      got += c.length;
      h.update(c);
    });
    if (await writeChunks(tunnel, body, r)) tunnel.end();
    const res = await bounded(done, tunnel);
    if (res === 'stall') return { ok: false, code: 'STALL', fatal: 'stall' };
    if (res.error) return classify(res.error);
    if (!res.ended) return { ok: false, code: 'CLOSED WITHOUT END OR ERROR', fatal: 'wrong' };
    if (got !== body.length || !h.digest().equals(sha256(body))) {
      return {
        ok: false,
        code: 'HASH MISMATCH echo',
        fatal: 'mismatch',
        detail: `${got}/${body.length} bytes, rstCode ${tunnel.stream.rstCode}`,
      };
    }
    return { ok: true, bytes: 2 * body.length };
  };

  /** bidi: download and upload at once; half-closes in either order. */
  const opBidi = async (t: Target, r: Rng): Promise<Outcome> => {
    const down = pickSize(r);
    const up = slice(clientData, r, pickSize(r));
    const serverFirst = r() < 0.5;
    const header = Buffer.alloc(BIDI_HEADER);
    header.writeBigUInt64BE(BigInt(down), 0);
    header.writeBigUInt64BE(BigInt(up.length), 8);
    sha256(up).copy(header, 16);
    const tunnel = await open(t, PORT.bidi);
    const h = createHash('sha256');
    let got = 0;
    const trailer: Buffer[] = [];
    const done = followTunnel(tunnel, (c) => {
      const body = Math.max(0, Math.min(c.length, down - got));
      if (body > 0) h.update(c.subarray(0, body));
      if (body < c.length) trailer.push(c.subarray(body));
      got += c.length;
    });
    const readEnd = new Promise<void>((res) => {
      tunnel.once('end', res);
      tunnel.once('close', res);
    });
    tunnel.write(header);
    // Server first: hold back the last bytes of the upload until the server's END_STREAM.
    const hold = serverFirst ? Math.min(up.length, 1 + intBelow(r, 4096)) : 0;
    let wrote = await writeChunks(tunnel, up.subarray(0, up.length - hold), r);
    if (wrote && serverFirst) {
      await readEnd;
      wrote = await writeChunks(tunnel, up.subarray(up.length - hold), r);
    }
    if (wrote) tunnel.end();
    const res = await bounded(done, tunnel);
    if (res === 'stall') return { ok: false, code: 'STALL', fatal: 'stall' };
    if (res.error) return classify(res.error);
    if (!res.ended) return { ok: false, code: 'CLOSED WITHOUT END OR ERROR', fatal: 'wrong' };
    const tail = Buffer.concat(trailer);
    if (got !== down + 32 || !h.digest().equals(tail)) {
      return {
        ok: false,
        code: 'HASH MISMATCH bidi',
        fatal: 'mismatch',
        detail: `${got}/${down + 32} bytes, rstCode ${tunnel.stream.rstCode}`,
      };
    }
    return { ok: true, bytes: down + up.length };
  };

  /** The client resets mid-transfer (CANCEL or CONNECT_ERROR), maybe after half-closing. */
  const opClientReset = async (t: Target, r: Rng): Promise<Outcome> => {
    const body = slice(clientData, r, 1 + intBelow(r, MiB));
    const tunnel = await open(t, PORT.echo);
    let resetDone = false;
    let error: Error | undefined;
    tunnel.on('error', (err) => {
      if (!resetDone) error ??= err;
    });
    tunnel.resume();
    const closed = new Promise<void>((res) => tunnel.once('close', res));
    void writeChunks(tunnel, body, r).then((ok) => {
      if (ok && r() < 0.3) tunnel.end();
    });
    await sleep(intBelow(r, 30));
    resetDone = true;
    if (r() < 0.5) tunnel.destroy();
    else tunnel.reset(H2_CODES.CONNECT_ERROR);
    const res = await bounded(closed, tunnel);
    if (res === 'stall') return { ok: false, code: 'STALL', fatal: 'stall' };
    return error ? classify(error) : { ok: true, bytes: 0 };
  };

  /** The server resets mid-upload with CONNECT_ERROR: the client must see exactly that. */
  const opServerReset = async (t: Target, r: Rng): Promise<Outcome> => {
    const tunnel = await open(t, PORT.serverReset);
    const done = followTunnel(tunnel, () => {});
    // More than the server reads before it resets: the upload cannot finish first.
    void writeChunks(tunnel, slice(clientData, r, MiB), r);
    const res = await bounded(done, tunnel);
    if (res === 'stall') return { ok: false, code: 'STALL', fatal: 'stall' };
    if (res.error instanceof StreamResetError && res.error.h2Code === H2_CODES.CONNECT_ERROR) {
      return { ok: true, bytes: 0 };
    }
    if (res.error) return classify(res.error);
    return { ok: false, code: 'SERVER RESET READ AS A CLEAN END', fatal: 'wrong' };
  };

  const opDenied = async (t: Target): Promise<Outcome> => {
    try {
      const tunnel = await pools[t.pool]!.open(keyOf(t), { authority: `10.0.${t.server}.1:${PORT.denied}` });
      tunnel.destroy();
      return { ok: false, code: 'DENIED CONNECT ANSWERED 200', fatal: 'wrong' };
    } catch (err) {
      if ((err as HboneError).code === 'ERR_HBONE_DENIED') return { ok: true, bytes: 0 };
      throw err;
    }
  };

  const runOp = async (kind: OpKind, t: Target, r: Rng): Promise<Outcome> => {
    try {
      switch (kind) {
        case 'echo':
          return await opEcho(t, r);
        case 'bidi':
          return await opBidi(t, r);
        case 'clientReset':
          return await opClientReset(t, r);
        case 'serverReset':
          return await opServerReset(t, r);
        case 'denied':
          return await opDenied(t);
      }
    } catch (err) {
      return classify(err);
    }
  };

  loopDelay.enable();
  const cpuAtStart = process.cpuUsage();
  const startedAt = Date.now();
  const deadline = startedAt + args.seconds * 1000;
  let stopping = false;

  const worker = async (w: number): Promise<void> => {
    const r = rngFrom(args.seed + 1 + w);
    while (!stopping && Date.now() < deadline) {
      const kind = pickWeighted(r, OP_WEIGHTS);
      const target: Target = { pool: intBelow(r, 2), server: intBelow(r, args.servers), viaProxy: r() < 0.5 };
      const from = Date.now();
      const out = await runOp(kind, target, r);
      const to = Date.now();
      ops++;
      if (out.ok) {
        okByKind[kind]++;
        bytes += out.bytes;
        continue;
      }
      failedByCode[out.code] = (failedByCode[out.code] ?? 0) + 1;
      if (out.fatal) {
        fatal.push({
          kind,
          target,
          code: out.code,
          fatal: out.fatal,
          ...(out.detail ? { detail: out.detail } : {}),
          startedAt: from - startedAt,
          endedAt: to - startedAt,
          faultsNear: faults
            .filter((f) => f.server === target.server && f.at >= from - FAULT_WINDOW_MS && f.at <= to + 1_000)
            .map((f) => `${f.kind}@${f.at - startedAt}`),
        });
      } else if (!explained(target, from, to)) {
        unexplained.push({
          kind,
          target,
          code: out.code,
          startedAt: from - startedAt,
          endedAt: to - startedAt,
        });
      }
    }
  };

  const faulter = async (): Promise<void> => {
    // No faults in the last seconds: the closing checks want a quiet end.
    while (args.faults && !stopping && Date.now() < deadline - 3_000) {
      await sleep(args.faultEveryMs * (0.5 + rng()));
      if (stopping || Date.now() >= deadline - 3_000) break;
      const kind = pickWeighted(rng, FAULT_WEIGHTS);
      const server = intBelow(rng, args.servers);
      faults.push({ kind, server, at: Date.now() });
      faultCounts[kind]++;
      switch (kind) {
        case 'restart':
          await child.request({ cmd: 'restart', i: server, how: 'graceful' });
          break;
        case 'crash':
          await child.request({ cmd: 'restart', i: server, how: 'crash' });
          break;
        case 'kill':
          await child.request({ cmd: 'kill', i: server });
          break;
        case 'rotateClient': {
          const p = intBelow(rng, 2);
          clientSources[p]!.setX509Svid(await mintSvid(clientId(p)));
          break;
        }
        case 'rotateServer': {
          const m = await ca.mint(serverId(server));
          await child.request({ cmd: 'rotate', i: server, certPem: m.certChainPem, keyPem: m.keyPem });
          break;
        }
      }
      // The end of a fault counts too (a restart takes a moment).
      faults.push({ kind, server, at: Date.now() });
    }
  };

  const progress = setInterval(() => {
    const s = (Date.now() - startedAt) / 1000;
    const ok = Object.values(okByKind).reduce((a, b) => a + b, 0);
    log(
      `${s.toFixed(0)} s: ${ops} ops, ${ok} ok, ${(bytes / MiB / s).toFixed(1)} MiB/s, ` +
        `${fatal.length} fatal, ${unexplained.length} unexplained`,
    );
  }, 10_000);

  log(`seed ${args.seed}, ${args.servers} servers, concurrency ${args.concurrency}, ${args.seconds} s`);
  await Promise.all([faulter(), ...Array.from({ length: args.concurrency }, (_, w) => worker(w))]);
  stopping = true;
  const elapsedS = (Date.now() - startedAt) / 1000;
  const clientCpu = cpuSeconds(process.cpuUsage(cpuAtStart));
  loopDelay.disable();
  clearInterval(progress);

  // Shut everything down, then the client process must be back to its baseline.
  const poolStats = pools.map((p) => p.stats());
  await Promise.all(pools.map((p) => p.close()));
  const serverStats = await child.request<ChildStats>({ cmd: 'stats' });
  await child.request({ cmd: 'exit' }).catch(() => null);
  const exitCode = await child.exited;

  let leaks: string[] = [];
  for (let i = 0; i < 20; i++) {
    await settle(gc);
    leaks = [
      ...growth(baseActive, activeResources(), 'active '),
      ...growth(baseTracked, tracker.snapshot(), 'tracked '),
    ];
    if (leaks.length === 0) break;
    await sleep(100);
  }

  tracker.disable();
  const sorted = [...openLatencies].sort((a, b) => a - b);
  const pct = (p: number): number =>
    sorted.length === 0
      ? Number.NaN
      : Math.round(sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]! * 100) /
        100;
  const okTotal = Object.values(okByKind).reduce((a, b) => a + b, 0);
  const failedTotal = Object.values(failedByCode).reduce((a, b) => a + b, 0);
  const mismatches = fatal.filter((f) => f.fatal === 'mismatch').length + serverStats.uploadMismatches;
  const summary = {
    seed: args.seed,
    seconds: Math.round(elapsedS * 10) / 10,
    servers: args.servers,
    pools: pools.length,
    concurrency: args.concurrency,
    transfers: { ok: okTotal, okByKind, failed: failedTotal, failedByCode },
    hashMismatches: mismatches,
    untypedErrors: fatal.filter((f) => f.fatal === 'untyped').length,
    wrongOutcomes: fatal.filter((f) => f.fatal === 'wrong').length,
    stalls: fatal.filter((f) => f.fatal === 'stall').length,
    unexplainedFailures: unexplained.length,
    fatalExamples: fatal.slice(0, 10),
    unexplainedExamples: unexplained.slice(0, 10),
    bytes,
    mbPerSec: Math.round((bytes / 1e6 / elapsedS) * 10) / 10,
    // The machine may be shared: CPU time says what the run cost, whatever else was running.
    cpuSeconds: { client: clientCpu, servers: serverStats.cpuSeconds },
    mbPerCpuSecond: Math.round((bytes / 1e6 / (clientCpu + serverStats.cpuSeconds)) * 10) / 10,
    clientEventLoopDelayMs: {
      p50: Math.round(loopDelay.percentile(50) / 1e4) / 100,
      p99: Math.round(loopDelay.percentile(99) / 1e4) / 100,
    },
    loadAverage1m: Math.round(loadavg()[0]! * 100) / 100,
    openLatencyMs: { n: sorted.length, p50: pct(50), p99: pct(99), max: pct(100) },
    slowestOpens: slowOpens,
    faults: faultCounts,
    pool: {
      dials: poolStats.reduce((s, p) => s + p.dials, 0),
      dialFailures: poolStats.reduce((s, p) => s + p.dialFailures, 0),
      reuses: poolStats.reduce((s, p) => s + p.reuses, 0),
      evictions: poolStats.reduce(
        (s, p) => {
          for (const k of Object.keys(s) as Array<keyof typeof s>) s[k] += p.evictions[k];
          return s;
        },
        { idle: 0, lifetime: 0, lru: 0, rotation: 0 },
      ),
    },
    server: { ...serverStats, exitCode },
    leaks: leaks.length === 0 ? 'none' : leaks,
  };
  const failed =
    mismatches > 0 || fatal.length > 0 || unexplained.length > 0 || leaks.length > 0 || exitCode !== 0;
  // Exit explicitly: a leaked handle would otherwise keep this process alive.
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`, () => process.exit(failed ? 1 : 0));
}

if (process.argv.includes('--child')) {
  void runChild();
} else {
  main().catch((err: unknown) => {
    process.stderr.write(`[soak] ${String((err as Error)?.stack ?? err)}\n`);
    process.exit(2);
  });
}
