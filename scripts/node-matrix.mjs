#!/usr/bin/env node
// Runs the test suite under another Node.js version, fetched from the npm registry.
//
//   node scripts/node-matrix.mjs <major | x.y.z> [--refresh] [vitest arguments...]
//   node scripts/node-matrix.mjs 22                      the whole suite under the newest Node 22
//   node scripts/node-matrix.mjs 24.20.0                 ... under exactly Node 24.20.0
//   node scripts/node-matrix.mjs 24 packages/hbone       only the files vitest matches
//   node scripts/node-matrix.mjs 24 --reporter=json --outputFile.json=r.json
//
// Node binaries are published on npm as `node-<platform>-<arch>` (the packages behind the `node`
// package): we install `node-<platform>-<arch>@<major | x.y.z>` with npm (--prefer-offline, no
// install scripts) into node_modules/.cache/hbone-node-matrix/<major | x.y.z>/ and reuse it on
// later runs (--refresh fetches the newest <major>.x again). Then, with that binary first on PATH
// (so every `node` a test or tool starts is that one too), we run what `pnpm test` runs:
// scripts/ensure-test-deps.mjs, then `vitest run` with the given arguments. The exit status is
// vitest's. Needs `pnpm install` done first (the workspace's node_modules are shared by all
// Node versions: no native addons, so nothing is rebuilt).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const argv = process.argv.slice(2);
const refresh = argv.includes('--refresh');
const rest = argv.filter((a) => a !== '--refresh');
const spec = rest.shift();
if (spec === undefined || !/^\d+(\.\d+\.\d+)?$/.test(spec)) {
  console.error('usage: node scripts/node-matrix.mjs <major | x.y.z> [--refresh] [vitest arguments...]');
  process.exit(2);
}
const wanted = spec.includes('.') ? `v${spec}` : `v${spec}.`;

const pkg = `node-${process.platform}-${process.arch}`;
const prefix = join(root, 'node_modules', '.cache', 'hbone-node-matrix', spec);
const pkgDir = join(prefix, 'node_modules', pkg);

/** The binary the package declares (`bin.node`: bin/node on Linux and macOS). */
function nodeBinPath() {
  const manifest = join(pkgDir, 'package.json');
  if (!existsSync(manifest)) return undefined;
  const { bin } = JSON.parse(readFileSync(manifest, 'utf8'));
  const rel = typeof bin === 'string' ? bin : bin?.node;
  return rel === undefined ? undefined : join(pkgDir, rel);
}

function versionOf(bin) {
  if (bin === undefined || !existsSync(bin)) return undefined;
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

let nodeBin = nodeBinPath();
let version = refresh ? undefined : versionOf(nodeBin);
if (version === undefined) {
  rmSync(prefix, { recursive: true, force: true });
  mkdirSync(prefix, { recursive: true });
  writeFileSync(join(prefix, 'package.json'), '{ "private": true }\n');
  console.error(`node-matrix: npm install ${pkg}@${spec} into ${prefix}`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  const r = spawnSync(
    npm,
    [
      'install',
      '--prefer-offline',
      '--ignore-scripts',
      '--no-save',
      '--no-audit',
      '--no-fund',
      '--loglevel=error',
      `${pkg}@${spec}`,
    ],
    { cwd: prefix, stdio: 'inherit', timeout: 600_000 },
  );
  if (r.status !== 0) {
    console.error(`node-matrix: could not install ${pkg}@${spec} (npm exited ${r.status ?? r.signal})`);
    process.exit(1);
  }
  nodeBin = nodeBinPath();
  version = versionOf(nodeBin);
}
if (version === undefined || !(version === wanted || version.startsWith(wanted))) {
  console.error(`node-matrix: ${nodeBin} is ${version ?? 'not runnable'}, not Node ${spec}`);
  process.exit(1);
}
console.error(`node-matrix: Node ${version} (${nodeBin})`);

const env = { ...process.env, PATH: `${dirname(nodeBin)}${delimiter}${process.env.PATH ?? ''}` };
// Children that inherit npm_node_execpath / NODE would otherwise still point at the outer node.
env.npm_node_execpath = nodeBin;
env.NODE = nodeBin;
const run = (args) => spawnSync(nodeBin, args, { cwd: root, env, stdio: 'inherit' });

const deps = run([join(root, 'scripts', 'ensure-test-deps.mjs')]);
if (deps.status !== 0) process.exit(deps.status ?? 1);

const started = Date.now();
const vitest = run([join(root, 'node_modules', 'vitest', 'vitest.mjs'), 'run', ...rest]);
const status = vitest.status ?? 1;
console.error(
  `node-matrix: Node ${version}: vitest exited ${vitest.status ?? vitest.signal} after ${Math.round((Date.now() - started) / 1000)} s`,
);
process.exit(status);
