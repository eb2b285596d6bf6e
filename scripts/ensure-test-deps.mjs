#!/usr/bin/env node
// Runs before vitest (root `test` script). The interoperability tests talk to a foreign HTTP/2
// stack, Python's `h2` as Debian packages it (python3-h2), run by /usr/bin/python3 (never the
// `python3` first on PATH: pyenv and virtualenvs do not see Debian's packages). See docs/interop.md.
//
// - h2 importable: exit 0 at once (one python start, a few tens of milliseconds).
// - otherwise, as root with apt-get: `apt-get update` only when apt knows no candidate for
//   python3-h2, then `apt-get install python3-h2`, all within INSTALL_BUDGET_MS; exit 0 if h2
//   then imports (this is what CI on a fresh Debian machine does).
// - otherwise: say how to install it and exit 1. The interop tests fail (never skip) without h2;
//   HBONE_SKIP_TEST_DEPS=1 turns this exit into a warning so the other suites still run.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

const PYTHON = '/usr/bin/python3';
const APT_GET = '/usr/bin/apt-get';
const APT_CACHE = '/usr/bin/apt-cache';
const PACKAGE = 'python3-h2';
const INSTALL_BUDGET_MS = 300_000;

/** `import h2` under the system interpreter, isolated from PYTHONPATH and user site-packages. */
function h2Importable() {
  if (!existsSync(PYTHON)) return false;
  const r = spawnSync(PYTHON, ['-I', '-B', '-c', 'import h2'], { stdio: 'ignore', timeout: 20_000 });
  return r.status === 0;
}

if (h2Importable()) process.exit(0);

const deadline = Date.now() + INSTALL_BUDGET_MS;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const aptEnv = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };

/** Runs an apt command within what is left of the budget; true on exit status 0. */
function run(cmd, args) {
  const left = deadline - Date.now();
  if (left <= 0) {
    console.error(
      `ensure-test-deps: out of time (${INSTALL_BUDGET_MS / 1000} s) before: ${cmd} ${args.join(' ')}`,
    );
    return false;
  }
  console.error(`ensure-test-deps: ${cmd} ${args.join(' ')}`);
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'ignore', 'inherit'], env: aptEnv, timeout: left });
  if (r.error) console.error(`ensure-test-deps: ${cmd} failed: ${r.error.message}`);
  return r.status === 0;
}

/** True when apt's package lists already name an installable python3-h2. */
function aptKnowsPackage() {
  if (!existsSync(APT_CACHE)) return false;
  const r = spawnSync(APT_CACHE, ['policy', PACKAGE], { encoding: 'utf8', timeout: 30_000 });
  const m = /Candidate:\s*(\S+)/.exec(r.stdout ?? '');
  return r.status === 0 && m !== null && m[1] !== '(none)';
}

function install() {
  let updated = false;
  if (!aptKnowsPackage()) {
    if (!run(APT_GET, ['update', '-qq'])) return false;
    updated = true;
  }
  const args = ['install', '-y', '-qq', '--no-install-recommends', PACKAGE];
  if (run(APT_GET, args)) return true;
  // Stale lists (a mirror dropped the old version): refresh once and try again.
  if (updated) return false;
  return run(APT_GET, ['update', '-qq']) && run(APT_GET, args);
}

if (isRoot && existsSync(APT_GET)) {
  console.error(`ensure-test-deps: ${PYTHON} cannot import h2; installing ${PACKAGE} for the interop tests`);
  if (install() && h2Importable()) process.exit(0);
  console.error(`ensure-test-deps: installing ${PACKAGE} did not make \`${PYTHON} -c 'import h2'\` work`);
} else {
  console.error(
    [
      `ensure-test-deps: the interop tests need Python's h2 for ${PYTHON} (the system interpreter),`,
      `and \`${PYTHON} -c 'import h2'\` fails.`,
      `Install it with:  sudo apt-get install ${PACKAGE}`,
      '(pip into a pyenv/virtualenv does not help: the tests always run /usr/bin/python3).',
      'Set HBONE_SKIP_TEST_DEPS=1 to run the other suites anyway; the interop tests will then fail.',
    ].join('\n'),
  );
}
if (process.env.HBONE_SKIP_TEST_DEPS === '1') {
  console.error('ensure-test-deps: HBONE_SKIP_TEST_DEPS=1: going on without h2');
  process.exit(0);
}
process.exit(1);
