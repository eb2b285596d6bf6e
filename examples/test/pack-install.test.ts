/**
 * The packages as npm users get them: scripts/pack-install.mjs packs each one (`pnpm pack`, which
 * builds it), installs the tarballs with npm into a scratch project under the OS temp dir, outside
 * the workspace, type-checks a small client/server against the published .d.ts files and runs it
 * (TestCa -> StaticSource/X509Svid/X509Bundle -> createServer/connect and a pool, an echo
 * checked byte for byte). The script removes its temp dir; this test checks that it did.
 */
import { spawn } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT_DEADLINE_MS = 140_000;

function runScript(): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'scripts/pack-install.mjs')], {
      cwd: root,
      env: { ...process.env, HBONE_PACK_INSTALL_DEADLINE_MS: String(SCRIPT_DEADLINE_MS) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d) => {
      output += d;
    });
    child.stderr.on('data', (d) => {
      output += d;
    });
    // Belt and braces: the script keeps its own deadline and cleans up on SIGTERM.
    const timer = setTimeout(() => child.kill('SIGTERM'), SCRIPT_DEADLINE_MS + 5_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('published packages', { timeout: SCRIPT_DEADLINE_MS + 15_000 }, () => {
  it('pack, install outside the workspace and run a client/server from the tarballs', async () => {
    const { code, output } = await runScript();
    const work = /pack-install: working in (\S+)/.exec(output)?.[1];
    try {
      expect(output, output).toContain('smoke: ok');
      expect(output).toContain('pack-install: ok');
      expect(code, output).toBe(0);
      expect(work, output).toBeDefined();
      expect(existsSync(work!), `${work} was left behind`).toBe(false);
    } finally {
      if (work !== undefined) rmSync(work, { recursive: true, force: true });
    }
  });
});
