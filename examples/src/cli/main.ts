/**
 * The `hbone` command: `pnpm hbone <command> [options]` from the repository root.
 * Dispatch, `--help`, and the one rule for failures: one line on stderr,
 * `hbone <command>: <CODE>: <message>`, and a non-zero exit status (2 for a usage mistake,
 * 1 for anything else).
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { run as runGateway } from '../cli-mesh/gateway.js';
import { run as runProxy } from '../cli-mesh/proxy.js';
import { run as runWaypoint } from '../cli-mesh/waypoint.js';
import { type CommandSpec, helpText, type ParsedArgs, parseArgs, UsageError } from './args.js';
import { caInitSpec, caIssueSpec, runCaInit, runCaIssue } from './ca.js';
import { connectSpec, runConnect } from './connect.js';
import { inspectSpec, runInspect } from './inspect.js';
import { loadSpec, runLoad } from './load.js';
import { errorLine, flushed } from './output.js';
import { runServe, serveSpec } from './serve.js';

/** The mesh components parse their own arguments (`--config F`, `--help`). */
const MESH_COMMANDS: ReadonlyMap<string, (argv: string[]) => Promise<number>> = new Map([
  ['proxy', runProxy],
  ['gateway', runGateway],
  ['waypoint', runWaypoint],
]);

interface Command {
  readonly spec: CommandSpec;
  readonly run: (args: ParsedArgs) => Promise<number>;
}

export const COMMANDS: ReadonlyMap<string, Command> = new Map([
  ['ca init', { spec: caInitSpec, run: runCaInit }],
  ['ca issue', { spec: caIssueSpec, run: runCaIssue }],
  ['serve', { spec: serveSpec, run: runServe }],
  ['connect', { spec: connectSpec, run: runConnect }],
  ['load', { spec: loadSpec, run: runLoad }],
  ['inspect', { spec: inspectSpec, run: runInspect }],
]);

export const TOP_HELP = `usage: hbone <command> [options]

HBONE, the tunnel protocol of Istio's ambient mesh (HTTP/2 CONNECT inside mutual TLS 1.3 with SPIFFE
identities), from the command line.

commands:
  ca init     create a SPIFFE CA for a trust domain (ca.pem, ca-key.pem, bundle.pem)
  ca issue    issue an X509-SVID for a SPIFFE ID (cert.pem, key.pem)
  serve       run an HBONE server that echoes or forwards each tunnel, logging JSON lines
  connect     open one tunnel and pipe stdin/stdout through it, like nc
  load        K concurrent tunnels on one connection, N bytes each, verified byte for byte
  inspect     show what a certificate, chain or bundle file holds
  proxy       run a node proxy (ztunnel's role) from a YAML config
  gateway     run an east-west gateway from a YAML config
  waypoint    run a waypoint (L7 policy on the server side) from a YAML config

Run "hbone <command> --help" for a command's options. Failures print one line on stderr,
"hbone <command>: <CODE>: <message>", and exit non-zero (2 for a usage mistake).

A first session:
  pnpm hbone ca init --trust-domain example.org --out /tmp/hb/ca
  pnpm hbone ca issue --ca /tmp/hb/ca --id spiffe://example.org/ns/default/sa/server --out /tmp/hb/server
  pnpm hbone ca issue --ca /tmp/hb/ca --id spiffe://example.org/ns/default/sa/client --out /tmp/hb/client
  pnpm hbone serve --listen 127.0.0.1:15008 --cert /tmp/hb/server/cert.pem --key /tmp/hb/server/key.pem \\
    --bundle /tmp/hb/ca/bundle.pem --echo
  echo hello | pnpm hbone connect --to 127.0.0.1:15008 --authority 127.0.0.1:15008 \\
    --cert /tmp/hb/client/cert.pem --key /tmp/hb/client/key.pem --bundle /tmp/hb/ca/bundle.pem \\
    --expect spiffe://example.org/ns/default/sa/server
`;

const CA_HELP = `usage: hbone ca <init|issue> [options]

  ca init     create a SPIFFE CA for a trust domain (ca.pem, ca-key.pem, bundle.pem)
  ca issue    issue an X509-SVID for a SPIFFE ID (cert.pem, key.pem)

Run "hbone ca init --help" or "hbone ca issue --help" for the options.
`;

/** Splits argv into the command name and its arguments. */
function resolveCommand(argv: readonly string[]): { name: string; rest: readonly string[] } {
  const first = argv[0] ?? '';
  if (first === 'ca') {
    const sub = argv[1] ?? '';
    return { name: sub.startsWith('-') || sub === '' ? 'ca' : `ca ${sub}`, rest: argv.slice(2) };
  }
  return { name: first, rest: argv.slice(1) };
}

/** Runs the command line; resolves with the exit status. Never throws. */
export async function main(argv: readonly string[]): Promise<number> {
  const out = (text: string): number => {
    process.stdout.write(text);
    return 0;
  };
  if (argv.length === 0) {
    process.stderr.write(TOP_HELP);
    return 2;
  }
  if (argv[0] === '--help' || argv[0] === '-h') return out(TOP_HELP);
  if (argv[0] === 'help') {
    const { name } = resolveCommand(argv.slice(1));
    const cmd = COMMANDS.get(name);
    if (cmd) return out(helpText(cmd.spec));
    return out(name === 'ca' ? CA_HELP : TOP_HELP);
  }
  const { name, rest } = resolveCommand(argv);
  const mesh = MESH_COMMANDS.get(name);
  if (mesh) return mesh([...rest]);
  if (name === 'ca') {
    if (rest.length === 0 && (argv[1] === '--help' || argv[1] === '-h')) return out(CA_HELP);
    process.stderr.write(errorLine('ca', new UsageError('expected "ca init" or "ca issue"')) + '\n');
    return 2;
  }
  const cmd = COMMANDS.get(name);
  if (!cmd) {
    process.stderr.write(
      `${errorLine(name || '?', new UsageError(`unknown command "${argv.slice(0, name.startsWith('ca ') ? 2 : 1).join(' ')}"; run "hbone --help"`))}\n`,
    );
    return 2;
  }
  try {
    const args = parseArgs(cmd.spec, rest);
    if (args.help) return out(helpText(cmd.spec));
    return await cmd.run(args);
  } catch (err) {
    const hint = err instanceof UsageError ? ` (see "hbone ${name} --help")` : '';
    process.stderr.write(`${errorLine(name, err)}${hint}\n`);
    return err instanceof UsageError ? 2 : 1;
  }
}

function isEntryPoint(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  const fatal = (err: unknown): void => {
    process.stderr.write(`${errorLine(process.argv[2] ?? '?', err)}\n`);
    process.exit(1);
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  const status = await main(process.argv.slice(2));
  // Exit explicitly: stdin or a watcher may still hold the event loop open.
  await Promise.all([flushed(process.stdout), flushed(process.stderr)]);
  process.exit(status);
}
