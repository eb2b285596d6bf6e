/**
 * What `hbone proxy|gateway|waypoint --config F` share: read and validate the YAML, load the
 * credentials it names (a CA directory from `hbone ca init`, plus federated bundles; paths relative
 * to the config file), start the component, print where it listens, write access-log lines on
 * stdout, and stop cleanly on SIGINT/SIGTERM (or an abort signal). Failures: one line on stderr,
 * `hbone <command>: <CODE>: <message>`, exit 2 for a usage mistake, 1 otherwise.
 */
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { type ComponentConfig, parseConfigYaml } from '../mesh/config.js';
import { CaIdentities } from '../mesh/workload-identities.js';

export interface RunOptions {
  /** Stops the component (besides SIGINT/SIGTERM). */
  readonly signal?: AbortSignal;
  readonly stdout?: (s: string) => void;
  readonly stderr?: (s: string) => void;
}

export interface Started {
  /** One line per listener, printed once it is up. */
  readonly summary: string;
  close(): Promise<void>;
}

function errorLine(command: string, err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  const msg = err instanceof Error ? err.message : String(err);
  return `hbone ${command}: ${typeof code === 'string' ? code : 'ERR_UNEXPECTED'}: ${msg.replace(/\s*\n\s*/g, ' ')}\n`;
}

export async function runComponent(
  command: 'proxy' | 'gateway' | 'waypoint',
  argv: readonly string[],
  opts: RunOptions,
  start: (cfg: ComponentConfig, ids: CaIdentities, write: (line: string) => void) => Promise<Started>,
): Promise<number> {
  const out = opts.stdout ?? ((s: string) => process.stdout.write(s));
  const err = opts.stderr ?? ((s: string) => process.stderr.write(s));
  const usage = `usage: hbone ${command} --config FILE\n\nRuns the mesh ${command} described by FILE (YAML: mesh, ${command}, credentials; see docs/examples.md).\n`;
  if (argv.includes('--help') || argv.includes('-h')) {
    out(usage);
    return 0;
  }
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config') file = argv[++i];
    else if (a.startsWith('--config=')) file = a.slice('--config='.length);
    else {
      err(`hbone ${command}: ERR_USAGE: unknown argument ${a}\n${usage}`);
      return 2;
    }
  }
  if (!file) {
    err(`hbone ${command}: ERR_USAGE: --config FILE is required\n${usage}`);
    return 2;
  }
  let started: Started;
  try {
    const text = await readFile(file, 'utf8');
    const cfg = parseConfigYaml(text, file);
    if (cfg.kind !== command) {
      throw Object.assign(new Error(`${file} configures a ${cfg.kind}, not a ${command}`), {
        code: 'ERR_MESH_CONFIG',
      });
    }
    if (!cfg.credentials) {
      throw Object.assign(new Error(`${file}: a credentials section (ca, bundles) is required`), {
        code: 'ERR_MESH_CONFIG',
      });
    }
    const ids = await CaIdentities.fromConfig(cfg.credentials, dirname(resolve(file)));
    started = await start(cfg, ids, out);
  } catch (e) {
    err(errorLine(command, e));
    return 1;
  }
  out(started.summary);
  await new Promise<void>((resolveStop) => {
    const stop = (): void => {
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      opts.signal?.removeEventListener('abort', stop);
      resolveStop();
    };
    if (opts.signal?.aborted) {
      stop();
      return;
    }
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    opts.signal?.addEventListener('abort', stop, { once: true });
  });
  await started.close();
  return 0;
}
