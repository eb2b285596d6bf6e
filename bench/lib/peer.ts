/**
 * Spawning benchmark processes: the server (`bench/server-process.ts`) and, where a clean heap
 * matters, a client. Children run the TypeScript sources through tsx with `--expose-gc`; their
 * stdout goes to our stderr so the runner's stdout stays one JSON document. Set
 * `HBONE_BENCH_CPU_PROF=DIR` to write a V8 CPU profile of every child into DIR.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Creds } from './creds.js';
import type { Counts, CpuSample, ListenSpec, MemorySample, Reply, Request } from './protocol.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER_PROCESS = fileURLToPath(new URL('../server-process.ts', import.meta.url));

export function childExecArgv(): string[] {
  const args = ['--conditions=@hbone/source', '--import', 'tsx', '--expose-gc'];
  const prof = process.env.HBONE_BENCH_CPU_PROF;
  if (prof) args.push('--cpu-prof', `--cpu-prof-dir=${prof}`);
  return args;
}

/** Forks a TypeScript module with an IPC channel; resolves once it says it is ready. */
export function forkTs(path: string, args: string[] = []): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    const child = fork(path, args, {
      cwd: REPO_ROOT,
      execArgv: childExecArgv(),
      stdio: ['ignore', 2, 2, 'ipc'],
    });
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`${path} did not start within 30 s`));
    }, 30_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${path} exited with ${code} before it was ready`));
    });
    child.once('message', (m: Reply) => {
      clearTimeout(timer);
      child.removeAllListeners('exit');
      child.removeAllListeners('error');
      if (m.ok && m.value === 'ready') resolve(child);
      else reject(new Error(`${path}: unexpected first message ${JSON.stringify(m)}`));
    });
  });
}

type Body<R> = R extends { id: number } ? Omit<R, 'id'> : never;

/** An RPC client over a child's IPC channel (requests carry ids, replies answer them). */
export class Rpc {
  readonly child: ChildProcess;
  #next = 1;
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

  constructor(child: ChildProcess) {
    this.child = child;
    child.on('message', (m: Reply) => {
      const p = this.#pending.get(m.id);
      if (!p) return;
      this.#pending.delete(m.id);
      if (m.ok) p.resolve(m.value);
      else p.reject(new Error(`child: ${m.error}`));
    });
    child.on('exit', (code) => {
      for (const p of this.#pending.values()) p.reject(new Error(`child exited (${code})`));
      this.#pending.clear();
    });
  }

  call<T, R extends { id: number } = Request>(msg: Body<R>, timeoutMs = 120_000): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`child call ${JSON.stringify(msg).slice(0, 80)} timed out`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ ...msg, id });
    });
  }

  /** Asks the child to exit; kills it if it has not within 10 s. */
  async exit(exitMessage: object): Promise<void> {
    if (this.child.exitCode !== null) return;
    const gone = new Promise<void>((r) => this.child.once('exit', () => r()));
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    try {
      this.child.send({ ...exitMessage, id: this.#next++ });
    } catch {
      this.child.kill('SIGKILL');
    }
    await gone;
    clearTimeout(timer);
  }
}

/** The server process of a benchmark. */
export class ServerProcess {
  readonly #rpc: Rpc;

  private constructor(rpc: Rpc) {
    this.#rpc = rpc;
  }

  static async start(creds: Creds): Promise<ServerProcess> {
    const sp = new ServerProcess(new Rpc(await forkTs(SERVER_PROCESS)));
    await sp.#rpc.call({ cmd: 'init', creds });
    return sp;
  }

  get pid(): number | undefined {
    return this.#rpc.child.pid;
  }

  /** Starts a listener on 127.0.0.1 and returns its port. */
  listen(spec: ListenSpec): Promise<number> {
    return this.#rpc.call<number>({ cmd: 'listen', spec });
  }

  close(port: number): Promise<void> {
    return this.#rpc.call<void>({ cmd: 'close', port });
  }

  /** Memory after garbage collection. */
  memory(): Promise<MemorySample> {
    return this.#rpc.call<MemorySample>({ cmd: 'memory' });
  }

  /** The server process's CPU time so far (user + system, microseconds). */
  async cpuUs(): Promise<number> {
    const c = await this.#rpc.call<CpuSample>({ cmd: 'cpu' });
    return c.user + c.system;
  }

  counts(): Promise<Counts> {
    return this.#rpc.call<Counts>({ cmd: 'counts' });
  }

  stop(): Promise<void> {
    return this.#rpc.exit({ cmd: 'exit' });
  }
}

/** Runs `fn` with a fresh server process, always stopping it. */
export async function withServer<T>(creds: Creds, fn: (sp: ServerProcess) => Promise<T>): Promise<T> {
  const sp = await ServerProcess.start(creds);
  try {
    return await fn(sp);
  } finally {
    await sp.stop();
  }
}
