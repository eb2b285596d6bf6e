import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { withIntermediate } from './creds.js';

/** The commit measured, and whether the package sources had uncommitted changes. */
function source(): { commit: string; packagesDirty: boolean } | { commit: 'unknown' } {
  try {
    const git = (...args: string[]) =>
      execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    return {
      commit: git('rev-parse', '--short=12', 'HEAD').trim(),
      packagesDirty: git('status', '--porcelain', '--', 'packages').trim().length > 0,
    };
  } catch {
    return { commit: 'unknown' };
  }
}

/** The facts a reader needs to compare two runs. */
export function machineFacts(): Record<string, unknown> {
  const cpus = os.cpus();
  return {
    cpuModel: cpus[0]?.model ?? 'unknown',
    cpuMHz: cpus[0]?.speed ?? 0,
    cores: cpus.length,
    availableParallelism: os.availableParallelism?.() ?? cpus.length,
    totalMemoryMiB: Math.round(os.totalmem() / 2 ** 20),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    v8: process.versions.v8,
    openssl: process.versions.openssl,
    nghttp2: process.versions.nghttp2,
    source: source(),
    certificates: withIntermediate()
      ? 'ECDSA P-256, root -> intermediate -> leaf'
      : 'ECDSA P-256, root -> leaf (no intermediate)',
    loadAverageAtStart: os.loadavg().map((x) => Math.round(x * 100) / 100),
  };
}
