/**
 * Runs the real `hbone` command as a child process (`node --conditions=@hbone/source --import tsx
 * examples/src/cli/main.ts ...`, what `pnpm hbone` runs), with every wait bounded and every child
 * tracked so `killAll()` in afterEach leaves nothing behind.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const NODE_ARGS = ['--conditions=@hbone/source', '--import', 'tsx'];
export const MAIN = 'examples/src/cli/main.ts';
export const OPENSSL = '/usr/bin/openssl';

const live = new Set<ChildProcess>();
const dirs: string[] = [];

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A running command: its output so far, and helpers to wait on it. */
export class Cli {
  readonly child: ChildProcess;
  stdout = Buffer.alloc(0);
  stderr = '';
  readonly exited: Promise<Exit>;
  readonly #waiters = new Set<() => void>();

  constructor(
    script: string,
    args: readonly string[],
    opts: { stdin?: Buffer | string; env?: NodeJS.ProcessEnv } = {},
  ) {
    this.child = spawn(process.execPath, [...NODE_ARGS, script, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    live.add(this.child);
    this.child.stdout!.on('data', (d: Buffer) => {
      this.stdout = Buffer.concat([this.stdout, d]);
      this.#notify();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => {
      this.stderr += d;
      this.#notify();
    });
    this.child.stdin!.on('error', () => {}); // the child may exit before reading all of stdin
    this.exited = new Promise((resolve) => {
      this.child.once('close', (code, signal) => {
        live.delete(this.child);
        this.#notify();
        resolve({ code, signal });
      });
    });
    if (opts.stdin !== undefined) this.child.stdin!.end(opts.stdin);
  }

  #notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Waits until `test` holds (re-checked on every output chunk and on exit), at most `ms`. */
  until<T>(test: () => T | undefined, what: string, ms = 60_000): Promise<T> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const v = test();
        if (v !== undefined && v !== false) {
          done();
          resolve(v);
        } else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done();
          reject(
            new Error(
              `exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}; stderr: ${this.stderr}`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; stderr: ${this.stderr}`));
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(check);
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Waits for exit, at most `ms` (then kills the child and rejects). */
  async exit(ms = 60_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`still running after ${ms} ms; stderr: ${this.stderr}`));
      }, ms);
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  get stdoutText(): string {
    return this.stdout.toString('utf8');
  }

  /** stdout split into lines, each parsed as JSON. */
  jsonLines(): unknown[] {
    return this.stdoutText
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as unknown);
  }
}

/** Starts `hbone ARGS...`. */
export function hbone(args: readonly string[], opts: { stdin?: Buffer | string } = {}): Cli {
  return new Cli(MAIN, args, opts);
}

/** Runs `hbone ARGS...` to completion. */
export async function runHbone(
  args: readonly string[],
  opts: { stdin?: Buffer | string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: Buffer; stdoutText: string; stderr: string }> {
  const cli = hbone(args, opts.stdin === undefined ? { stdin: '' } : { stdin: opts.stdin });
  const { code } = await cli.exit(opts.timeoutMs ?? 60_000);
  return { code, stdout: cli.stdout, stdoutText: cli.stdoutText, stderr: cli.stderr };
}

/** A running `hbone serve`, once it says where it listens. */
export async function serve(args: readonly string[]): Promise<{ cli: Cli; address: string; port: number }> {
  const cli = hbone(['serve', '--listen', '127.0.0.1:0', ...args]);
  const m = await cli.until(
    () => /listening on 127\.0\.0\.1:(\d+)/.exec(cli.stderr) ?? undefined,
    'listening',
  );
  const port = Number(m[1]);
  return { cli, address: `127.0.0.1:${port}`, port };
}

/** Kills every child still running (SIGKILL) and removes temp dirs. For afterEach. */
export async function killAll(): Promise<void> {
  const waits = [...live].map(
    (c) =>
      new Promise<void>((resolve) => {
        if (c.exitCode !== null || c.signalCode !== null) return resolve();
        const t = setTimeout(resolve, 5_000);
        c.once('close', () => {
          clearTimeout(t);
          resolve();
        });
        c.kill('SIGKILL');
      }),
  );
  await Promise.all(waits);
  live.clear();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** A temp dir removed by `killAll()`. */
export function tempDir(prefix = 'hbone-cli-'): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(d);
  return d;
}

export function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** `ca init` + `ca issue` for server and client ids, through the command itself. */
export async function makePki(
  dir: string,
  ids: { server: string; client: string; other?: string },
  trustDomain = 'example.org',
): Promise<{ bundle: string; files: Record<string, { cert: string; key: string }> }> {
  const ca = join(dir, 'ca');
  const init = await runHbone(['ca', 'init', '--trust-domain', trustDomain, '--out', ca]);
  if (init.code !== 0) throw new Error(`ca init failed: ${init.stderr}`);
  const files: Record<string, { cert: string; key: string }> = {};
  await Promise.all(
    Object.entries(ids).map(async ([name, id]) => {
      const out = join(dir, name);
      const r = await runHbone(['ca', 'issue', '--ca', ca, '--id', id!, '--out', out]);
      if (r.code !== 0) throw new Error(`ca issue ${id} failed: ${r.stderr}`);
      files[name] = { cert: join(out, 'cert.pem'), key: join(out, 'key.pem') };
    }),
  );
  return { bundle: join(ca, 'bundle.pem'), files };
}

/** `--cert F --key F` for one of `makePki`'s identities. */
export function certArgs(f: { cert: string; key: string }): string[] {
  return ['--cert', f.cert, '--key', f.key];
}
