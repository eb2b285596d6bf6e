/**
 * `hbone serve`: an HBONE server. Each CONNECT is echoed back (`--echo`) or forwarded to its
 * `:authority` over TCP (`--forward`, ztunnel's inbound), and logged as one JSON line on stdout
 * when it is done. Clients rejected before HTTP/2 (TLS, identity) get one line each on stderr.
 * SIGINT/SIGTERM drain gracefully (GOAWAY, live tunnels finish up to --drain) and exit 0.
 */
import {
  createServer,
  forwardHandler,
  type HboneServer,
  type IncomingTunnel,
  type JoinResult,
  type TunnelHandler,
} from '@hbone/hbone';
import { type Authorizer, authorizeIf, SpiffeId, TrustDomain } from '@hbone/spiffe';
import {
  CliError,
  type CommandSpec,
  type ParsedArgs,
  parseDurationMs,
  parseHostPort,
  required,
  UsageError,
} from './args.js';
import { loadCredentials, onReload } from './credentials.js';
import { errorCode, errorLine, errorMessage, warn } from './output.js';

export const serveSpec: CommandSpec = {
  name: 'serve',
  summary:
    'Run an HBONE server (mutual TLS 1.3 + HTTP/2 CONNECT). Every CONNECT is echoed back (--echo) or forwarded\nover TCP to its :authority (--forward), and logged as one JSON line on stdout when it is done.',
  flags: {
    listen: {
      type: 'string',
      required: true,
      value: 'HOST:PORT',
      help: 'address to listen on; port 0 picks a free port (HBONE uses 15008)',
    },
    cert: { type: 'string', required: true, value: 'FILE', help: 'our SVID: PEM leaf, then intermediates' },
    key: { type: 'string', required: true, value: 'FILE', help: 'its private key (PEM)' },
    bundle: {
      type: 'string',
      required: true,
      value: 'FILE',
      help: "our trust domain's bundle (PEM or SPIFFE bundle JSON)",
    },
    federate: {
      type: 'string',
      repeat: true,
      value: 'TD=FILE',
      help: 'the bundle of another trust domain, whose clients may then connect if allowed',
    },
    allow: { type: 'string', repeat: true, value: 'SPIFFE_ID', help: 'allow this client identity' },
    'allow-trust-domain': {
      type: 'string',
      repeat: true,
      value: 'TD',
      help: 'allow every client of this trust domain',
    },
    echo: { type: 'boolean', help: "send each tunnel's bytes back to the client" },
    forward: {
      type: 'boolean',
      help: 'connect each tunnel to its :authority over TCP (IP:PORT authorities)',
    },
    drain: {
      type: 'string',
      value: 'DURATION',
      help: 'on SIGINT/SIGTERM, how long live tunnels may take to finish (default 5s)',
    },
  },
  details: [
    'Who may connect: with neither --allow nor --allow-trust-domain, any client of our own trust domain',
    "(ztunnel's default); otherwise exactly the clients the flags name. Clients are always verified",
    'against the bundle of their own trust domain (--bundle for ours, --federate for others).',
    '',
    'Output: on stderr, "hbone serve: listening on HOST:PORT as SPIFFE_ID (MODE)" once ready, and one',
    'line per rejected client; on stdout, one JSON object per CONNECT:',
    '  {"time","peer","remote","authority","headers":{...},"status","bytesIn","bytesOut","durationMs","error"?}',
    'The certificate, key and bundle files are watched: rotated files apply to new connections.',
    'SIGINT/SIGTERM: graceful drain, then exit 0; a second signal stops at once.',
    '',
    'Example:',
    '  pnpm hbone serve --listen 127.0.0.1:15008 --cert web/cert.pem --key web/key.pem \\',
    '    --bundle ca/bundle.pem --allow spiffe://example.org/ns/default/sa/client --echo',
  ].join('\n'),
};

/** The CONNECT's HBONE headers, in wire order, without pseudo-headers. */
function requestHeaders(t: IncomingTunnel): Record<string, string> {
  const out: Record<string, string> = {};
  const raw = t.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase();
    if (name.startsWith(':')) continue;
    out[name] = name in out ? `${out[name]},${raw[i + 1]!}` : raw[i + 1]!;
  }
  return out;
}

function authorizerFor(allow: readonly string[], domains: readonly string[]): Authorizer | undefined {
  if (allow.length === 0 && domains.length === 0) return undefined;
  const ids = new Set<string>();
  for (const a of allow) {
    try {
      ids.add(SpiffeId.parse(a).toString());
    } catch (err) {
      throw new CliError(errorCode(err), `--allow ${a}: ${errorMessage(err)}`);
    }
  }
  const tds = domains.map((d) => {
    try {
      return TrustDomain.parse(d);
    } catch (err) {
      throw new CliError(errorCode(err), `--allow-trust-domain ${d}: ${errorMessage(err)}`);
    }
  });
  return authorizeIf((id) => ids.has(id.toString()) || tds.some((td) => id.memberOf(td)));
}

interface LogEntry {
  time: string;
  peer: string;
  remote: string;
  authority: string;
  headers: Record<string, string>;
  status: number;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  error?: string;
}

function logLine(t: IncomingTunnel, started: number, status: number, r: Partial<JoinResult>): void {
  const c = t.connection;
  const entry: LogEntry = {
    time: new Date(started).toISOString(),
    peer: t.peerIdentity.toString(),
    remote: c.remoteAddress === undefined ? '' : `${c.remoteAddress}:${c.remotePort}`,
    authority: t.authorityString,
    headers: requestHeaders(t),
    status,
    // Bytes in: from the client through the tunnel; out: back to the client.
    bytesIn: r.bytesFromTunnel ?? 0,
    bytesOut: r.bytesToTunnel ?? 0,
    durationMs: Date.now() - started,
  };
  if (r.error) entry.error = `${errorCode(r.error)}: ${errorMessage(r.error)}`;
  process.stdout.write(`${JSON.stringify(entry)}\n`);
}

/** Echo: the tunnel's bytes go straight back, with half-close (the client's FIN ends our side). */
function echoHandler(): TunnelHandler {
  return (incoming) => {
    const started = Date.now();
    const tunnel = incoming.accept();
    let error: Error | undefined;
    tunnel.on('error', (err) => {
      error ??= err;
    });
    tunnel.pipe(tunnel);
    tunnel.once('close', () =>
      logLine(incoming, started, 200, {
        bytesFromTunnel: tunnel.bytesReceived,
        bytesToTunnel: tunnel.bytesSent,
        ...(error ? { error } : {}),
      }),
    );
  };
}

export async function runServe(args: ParsedArgs): Promise<number> {
  const echo = args.switches.has('echo');
  const forward = args.switches.has('forward');
  if (echo === forward) throw new UsageError('give exactly one of --echo and --forward');
  const { host, port } = parseHostPort('listen', required(args, 'listen'), true);
  const authorizer = authorizerFor(args.all.get('allow') ?? [], args.all.get('allow-trust-domain') ?? []);
  const drain = args.strings.get('drain');
  const drainDeadlineMs = drain === undefined ? 5_000 : parseDurationMs('drain', drain);
  const creds = loadCredentials({
    cert: required(args, 'cert'),
    key: required(args, 'key'),
    bundle: required(args, 'bundle'),
    federate: args.all.get('federate') ?? [],
    watch: true,
  });
  for (const w of creds.warnings) warn(`hbone serve: warning: ${w}`);
  onReload(creds.svidSource, {
    change: () => warn(`hbone serve: credentials reloaded (${creds.svidSource.getX509Svid().id})`),
    error: (err) => warn(`${errorLine('serve', err)} (reloading credentials; keeping the previous ones)`),
  });

  const handler: TunnelHandler = echo
    ? echoHandler()
    : (() => {
        const starts = new WeakMap<IncomingTunnel, number>();
        const inner = forwardHandler({
          onComplete: (t, r) => logLine(t, starts.get(t) ?? Date.now(), r.status, r),
        });
        return (t: IncomingTunnel) => {
          starts.set(t, Date.now());
          return inner(t);
        };
      })();

  let server: HboneServer;
  try {
    server = createServer({
      svidSource: creds.svidSource,
      bundleSource: creds.bundleSource,
      ...(authorizer ? { authorizer } : {}),
      handler,
      drainDeadlineMs,
    });
  } catch (err) {
    creds.close();
    throw err;
  }
  server.on('clientError', (err: unknown) => warn(errorLine('serve', err)));
  server.on('handlerError', (err: unknown) => warn(errorLine('serve', err)));

  let address: { address: string; port: number };
  try {
    address = await server.listen(port, host);
  } catch (err) {
    creds.close();
    await server.destroy();
    throw new CliError(errorCode(err), `cannot listen on ${host}:${port}: ${errorMessage(err)}`);
  }
  const shown = address.address.includes(':') ? `[${address.address}]` : address.address;
  const who = authorizer
    ? `allowing ${[...(args.all.get('allow') ?? []), ...(args.all.get('allow-trust-domain') ?? []).map((d) => `${d}/*`)].join(', ')}`
    : `allowing trust domain ${creds.svid.id.trustDomain.name}`;
  warn(
    `hbone serve: listening on ${shown}:${address.port} as ${creds.svid.id} (${echo ? 'echo' : 'forward'}; ${who})`,
  );

  return new Promise<number>((resolve) => {
    let stopping = false;
    let hardStop: NodeJS.Timeout | undefined;
    const stop = (signal: NodeJS.Signals): void => {
      if (stopping) {
        warn(`hbone serve: ${signal} again: closing every connection now`);
        void server.destroy();
        finish(0);
        return;
      }
      stopping = true;
      warn(`hbone serve: ${signal}: draining (up to ${drainDeadlineMs} ms)`);
      void server.close().then(() => finish(0));
      // A referenced timer: the server's own drain deadline does not keep the process alive, and a
      // wedged connection must not turn a drain into a hang (or into an exit with status 13).
      hardStop = setTimeout(() => {
        if (finished) return;
        warn('hbone serve: the drain did not finish in time: closing every connection now');
        void server.destroy();
        finish(0);
      }, drainDeadlineMs + 1_000);
    };
    let finished = false;
    const finish = (code: number): void => {
      if (finished) return;
      finished = true;
      clearTimeout(hardStop);
      creds.close();
      process.removeListener('SIGINT', stop);
      process.removeListener('SIGTERM', stop);
      warn('hbone serve: closed');
      resolve(code);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}
