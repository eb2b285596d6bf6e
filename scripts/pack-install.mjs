#!/usr/bin/env node
// Packs every package as npm would receive it, then proves the tarballs work on their own.
//
//   node scripts/pack-install.mjs            pack, install the tarballs into a scratch project
//                                            outside the workspace (npm, --prefer-offline), type-check
//                                            and run a client/server there that uses only the
//                                            published entry points
//   node scripts/pack-install.mjs --check    pack, then publint (--strict) and attw
//                                            (--profile esm-only) on each tarball
//   --keep                                   keep the temporary directory (its path is printed)
//
// Packing is `pnpm pack` in each package directory: its `prepack` script builds dist (tsup), and
// pnpm applies `publishConfig` (exports without the "@hbone/source" condition) and replaces
// `workspace:^` with the real versions, exactly as `pnpm publish` does. Every tarball is then
// checked for what it must (dist .js + .d.ts, README, LICENSE) and must not (src, workspace:
// ranges, the source condition) contain. Everything happens in one mkdtemp directory under the
// OS temp dir, removed at the end (also on failure, on SIGINT/SIGTERM and when the whole run
// exceeds its deadline: HBONE_PACK_INSTALL_DEADLINE_MS, default 140 s). Exit 0 when all is well.
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const PACKAGES = ['spiffe', 'hbone', 'pool', 'testkit'];
const STEP_TIMEOUT_MS = { pack: 120_000, install: 90_000, typecheck: 60_000, run: 30_000, lint: 120_000 };
const DEADLINE_MS = Number(process.env.HBONE_PACK_INSTALL_DEADLINE_MS ?? 140_000);

const args = new Set(process.argv.slice(2));
const mode = args.has('--check') ? 'check' : 'install';
const keep = args.has('--keep');
for (const a of args) {
  if (!['--check', '--keep'].includes(a)) {
    console.error(
      `pack-install: unknown argument ${a}\nusage: node scripts/pack-install.mjs [--check] [--keep]`,
    );
    process.exit(2);
  }
}

const work = mkdtempSync(join(tmpdir(), 'hbone-pack-install-'));
console.log(`pack-install: working in ${work}`);
const children = new Set();
function cleanup() {
  for (const c of children) c.kill('SIGKILL');
  if (keep) console.log(`pack-install: kept ${work}`);
  else rmSync(work, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => {
    console.error(`pack-install: ${sig}: stopping`);
    cleanup();
    process.exit(130);
  });
}
setTimeout(() => {
  console.error(`pack-install: FAILED: not done within ${DEADLINE_MS} ms (HBONE_PACK_INSTALL_DEADLINE_MS)`);
  cleanup();
  process.exit(1);
}, DEADLINE_MS).unref();

/** Runs a command; resolves with its output, rejects (with the output) on failure or timeout. */
function run(cmd, argv, { cwd, timeoutMs, env = process.env, label = `${cmd} ${argv.join(' ')}` }) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => {
      out += `\n[killed after ${timeoutMs} ms]`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      children.delete(child);
      reject(Object.assign(new Error(`${label}: ${err.message}`), { output: out }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      if (code === 0) resolve(out);
      else reject(Object.assign(new Error(`${label} (in ${cwd}) exited ${code ?? signal}`), { output: out }));
    });
  });
}

/**
 * How to run pnpm: the one running us (`pnpm test` sets npm_execpath), else `pnpm` on PATH, else
 * the packageManager version through npx.
 */
function pnpmCommand() {
  const execPath = process.env.npm_execpath;
  if (execPath && /pnpm/.test(basename(execPath)) && existsSync(execPath)) {
    return /\.c?js$/.test(execPath) ? [process.execPath, [execPath]] : [execPath, []];
  }
  if (spawnSync('pnpm', ['--version'], { stdio: 'ignore' }).status === 0) return ['pnpm', []];
  const { packageManager } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  return ['npx', ['--yes', packageManager]];
}

/** `tar -tzf` / `tar -xzOf` on a .tgz. */
function tarList(tgz) {
  const r = spawnSync('tar', ['-tzf', tgz], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar -tzf ${tgz}: ${r.stderr}`);
  return r.stdout.split('\n').filter(Boolean);
}
function tarRead(tgz, entry) {
  const r = spawnSync('tar', ['-xzOf', tgz, entry], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tar -xzOf ${tgz} ${entry}: ${r.stderr}`);
  return r.stdout;
}

/** Runs `tasks` (functions returning promises) at most `limit` at a time. */
async function inParallel(tasks, limit) {
  const results = [];
  let next = 0;
  async function worker() {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]();
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}

/**
 * Packs every package into `dest` (as many at once as there are CPUs: each pack is a tsup build,
 * mostly the single-threaded .d.ts bundling); returns { name, version, tgz } per package.
 */
async function packAll(dest) {
  mkdirSync(dest, { recursive: true });
  const [pnpm, pre] = pnpmCommand();
  const started = Date.now();
  await inParallel(
    PACKAGES.map(
      (p) => () =>
        run(pnpm, [...pre, 'pack', '--pack-destination', dest], {
          cwd: join(root, 'packages', p),
          timeoutMs: STEP_TIMEOUT_MS.pack,
          label: `pnpm pack (packages/${p})`,
        }),
    ),
    Math.max(1, availableParallelism()),
  );
  const tarballs = PACKAGES.map((p) => {
    const manifest = JSON.parse(readFileSync(join(root, 'packages', p, 'package.json'), 'utf8'));
    const file = `${manifest.name.replace('@', '').replace('/', '-')}-${manifest.version}.tgz`;
    const tgz = join(dest, file);
    if (!existsSync(tgz))
      throw new Error(`pnpm pack made no ${file} in ${dest} (${readdirSync(dest).join(', ')})`);
    return { name: manifest.name, version: manifest.version, tgz };
  });
  console.log(`pack-install: packed ${tarballs.length} packages in ${Date.now() - started} ms`);
  return tarballs;
}

/** What a published tarball must and must not hold; returns a list of problems. */
function inspectTarball({ name, tgz }) {
  const problems = [];
  const entries = tarList(tgz).map((e) => e.replace(/^package\//, ''));
  const manifest = JSON.parse(tarRead(tgz, 'package/package.json'));
  for (const must of ['package.json', 'README.md', 'LICENSE', 'dist/index.js', 'dist/index.d.ts']) {
    if (!entries.includes(must)) problems.push(`${name}: ${must} missing from the tarball`);
  }
  for (const e of entries) {
    if (
      e.startsWith('src/') ||
      e.startsWith('test/') ||
      e.includes('node_modules/') ||
      e.endsWith('.tsbuildinfo')
    ) {
      problems.push(`${name}: ${e} should not be published`);
    }
  }
  const text = JSON.stringify(manifest);
  if (text.includes('workspace:')) problems.push(`${name}: a workspace: range is left in package.json`);
  if (text.includes('@hbone/source'))
    problems.push(`${name}: the @hbone/source condition is left in package.json`);
  if (manifest.sideEffects !== false) problems.push(`${name}: sideEffects is not false`);
  if (manifest.license !== 'Apache-2.0') problems.push(`${name}: license is not Apache-2.0`);
  if (manifest.publishConfig?.access !== 'public')
    problems.push(`${name}: publishConfig.access is not public`);
  const dot = manifest.exports?.['.'];
  if (dot?.types !== './dist/index.d.ts' || dot?.import !== './dist/index.js') {
    problems.push(`${name}: exports["."] is ${JSON.stringify(dot)}`);
  }
  console.log(
    `pack-install: ${basename(tgz)}: ${entries.length} files (${entries.filter((e) => e.startsWith('dist/')).join(', ')})`,
  );
  return problems;
}

/** publint --strict and attw --profile esm-only on every tarball. */
async function lint(tarballs) {
  const bin = (b) => join(root, 'node_modules', '.bin', b);
  let failed = 0;
  const results = await Promise.all(
    tarballs.flatMap(({ name, tgz }) => [
      // --strict: a warning fails the check too. Suggestions are printed but do not fail.
      run(bin('publint'), ['run', tgz, '--strict'], { cwd: work, timeoutMs: STEP_TIMEOUT_MS.lint }).then(
        (out) => ({ name, tool: 'publint', ok: true, out }),
        (err) => ({ name, tool: 'publint', ok: false, out: `${err.message}\n${err.output}` }),
      ),
      // ESM-only packages (Node >= 20.19): the esm-only profile leaves out the node10 and
      // node16-from-CJS resolutions, where `require()` finding ESM is the design, not a bug.
      run(
        bin('attw'),
        [tgz, '--profile', 'esm-only', '--format', 'table-flipped', '--no-color', '--no-emoji'],
        {
          cwd: work,
          timeoutMs: STEP_TIMEOUT_MS.lint,
        },
      ).then(
        (out) => ({ name, tool: 'attw', ok: true, out }),
        (err) => ({ name, tool: 'attw', ok: false, out: `${err.message}\n${err.output}` }),
      ),
    ]),
  );
  for (const r of results) {
    console.log(`\n== ${r.tool} ${r.name}: ${r.ok ? 'ok' : 'FAILED'}\n${r.out.trim()}`);
    if (!r.ok) failed++;
  }
  return failed;
}

/** The scratch project: the tarballs and nothing from the workspace. */
const SMOKE = `// Uses only the published entry points of the four packages.
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer } from '@hbone/hbone';
import { createPool } from '@hbone/pool';
import { StaticSource, X509Bundle, X509Svid } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';

const SERVER_ID = 'spiffe://example.org/ns/default/sa/server';
const CLIENT_ID = 'spiffe://example.org/ns/default/sa/client';

/** @param {import('node:stream').Duplex} stream */
function readAll(stream) {
  return new Promise((resolve, reject) => {
    /** @type {Buffer[]} */
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}
/** @param {Uint8Array} b */
const sha256 = (b) => createHash('sha256').update(b).digest('hex');

/**
 * @param {import('@hbone/testkit').TestCa} ca
 * @param {string} id
 */
async function sourceFor(ca, id) {
  const minted = await ca.mint(id);
  return new StaticSource({
    svid: X509Svid.parse(minted.certChainPem, minted.keyPem),
    bundles: [X509Bundle.fromPem(ca.trustDomain, ca.bundlePem)],
  });
}

const ca = await TestCa.create('example.org');
const serverSource = await sourceFor(ca, SERVER_ID);
const clientSource = await sourceFor(ca, CLIENT_ID);

/** @type {string[]} */
const seen = [];
const server = createServer({
  svidSource: serverSource,
  bundleSource: serverSource,
  handler: (t) => {
    seen.push(\`\${t.peerIdentity.toString()} -> \${t.authorityString}\`);
    const tunnel = t.accept();
    tunnel.on('error', () => {});
    tunnel.pipe(tunnel); // echo, half-close included
  },
});
const { port } = await server.listen(0, '127.0.0.1');

// One tunnel on a session of our own.
const session = await connect(
  { host: '127.0.0.1', port },
  { svidSource: clientSource, bundleSource: clientSource, expectedIdentities: [SERVER_ID] },
);
const data = randomBytes(256 * 1024);
const tunnel = await session.open({ authority: '10.0.0.2:8080' });
const back = readAll(tunnel);
tunnel.end(data);
const got = await back;
if (sha256(got) !== sha256(data)) throw new Error(\`echo mismatch: sent \${data.length} bytes, got \${got.length}\`);

// One tunnel through a pool.
const pool = createPool({ credentials: () => ({ svidSource: clientSource, bundleSource: clientSource }) });
const pooled = await pool.open(
  { source: CLIENT_ID, destinations: [SERVER_ID], address: { host: '127.0.0.1', port } },
  { authority: '10.0.0.3:8080' },
);
const pooledBack = readAll(pooled);
pooled.end('hello through the pool');
const pooledGot = (await pooledBack).toString();
if (pooledGot !== 'hello through the pool') throw new Error(\`pool echo mismatch: \${pooledGot}\`);

await pool.close();
await session.close();
await server.close();
if (seen.length !== 2 || !seen.every((s) => s.startsWith(CLIENT_ID))) {
  throw new Error(\`the server saw \${JSON.stringify(seen)}\`);
}
console.log(\`smoke: ok (\${got.length} bytes echoed, pool tunnel ok, node \${process.version})\`);
`;

/** Installs the tarballs into a fresh project outside the workspace and runs SMOKE there. */
async function installAndRun(tarballs) {
  const app = join(work, 'app');
  mkdirSync(app);
  // `overrides` pins the @hbone packages' dependencies on each other to the tarballs too, so
  // nothing named @hbone/* is ever looked up on the registry.
  const files = Object.fromEntries(tarballs.map(({ name, tgz }) => [name, `file:${tgz}`]));
  writeFileSync(
    join(app, 'package.json'),
    `${JSON.stringify(
      { name: 'hbone-pack-install', private: true, type: 'module', dependencies: files, overrides: files },
      null,
      2,
    )}\n`,
  );
  writeFileSync(join(app, 'smoke.mjs'), SMOKE);
  // The scratch project's own npmrc: no workspace settings leak in; the cache is reused.
  writeFileSync(join(app, '.npmrc'), 'fund=false\naudit=false\nupdate-notifier=false\n');
  let started = Date.now();
  await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: app,
    timeoutMs: STEP_TIMEOUT_MS.install,
  });
  console.log(`pack-install: npm install of the tarballs took ${Date.now() - started} ms`);

  // The smoke program type-checks against the published .d.ts files (JSDoc + checkJs, strict,
  // no skipLibCheck: every shipped declaration file is compiled), with the workspace's TypeScript
  // and @types/node (the scratch project installs neither).
  started = Date.now();
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  await run(
    process.execPath,
    [
      tsc,
      '--noEmit',
      '--allowJs',
      '--checkJs',
      '--strict',
      '--skipLibCheck',
      'false',
      '--module',
      'nodenext',
      '--moduleResolution',
      'nodenext',
      '--target',
      'es2022',
      '--lib',
      'es2023',
      '--types',
      'node',
      '--typeRoots',
      join(root, 'node_modules', '@types'),
      'smoke.mjs',
    ],
    { cwd: app, timeoutMs: STEP_TIMEOUT_MS.typecheck, label: 'tsc (smoke.mjs against the published types)' },
  );
  console.log(`pack-install: smoke.mjs type-checks against the published types (${Date.now() - started} ms)`);

  started = Date.now();
  const out = await run(process.execPath, ['smoke.mjs'], { cwd: app, timeoutMs: STEP_TIMEOUT_MS.run });
  process.stdout.write(out);
  if (!out.includes('smoke: ok')) throw new Error('smoke.mjs did not report ok');
  console.log(`pack-install: smoke.mjs ran in ${Date.now() - started} ms`);
}

let status = 0;
try {
  const tarballs = await packAll(join(work, 'tarballs'));
  const problems = tarballs.flatMap(inspectTarball);
  for (const p of problems) console.error(`pack-install: ${p}`);
  if (problems.length > 0) status = 1;
  else if (mode === 'check') {
    const failed = await lint(tarballs);
    if (failed > 0) status = 1;
    console.log(`\ncheck:publish: ${failed === 0 ? 'ok' : `${failed} check(s) failed`}`);
  } else {
    await installAndRun(tarballs);
    console.log('pack-install: ok');
  }
} catch (err) {
  console.error(`pack-install: FAILED: ${err.message}`);
  if (err.output) console.error(err.output.trim());
  status = 1;
} finally {
  cleanup();
}
process.exit(status);
