/**
 * `hbone connect`: `nc` over one HBONE tunnel. Dials the peer (mutual TLS 1.3, the peer must be
 * one of --expect), sends CONNECT for --authority, then pipes stdin into the tunnel and the
 * tunnel to stdout. stdin's end-of-file becomes END_STREAM; the peer's END_STREAM ends the
 * command with status 0 once stdout has flushed. Any failure: one line on stderr with the
 * error's code, non-zero status.
 */
import {
  connect,
  type HboneClientSession,
  type HboneTunnel,
  parseBaggage,
  parseForwarded,
  parseForwardedNetwork,
  parseTraceparent,
  type TunnelRequest,
} from '@hbone/hbone';
import { SpiffeId } from '@hbone/spiffe';
import {
  CliError,
  type CommandSpec,
  type FlagSpec,
  type ParsedArgs,
  parseDurationMs,
  parseHostPort,
  parseKeyValue,
  required,
  UsageError,
} from './args.js';
import { type Credentials, loadCredentials } from './credentials.js';
import { closeWithin, errorCode, errorLine, errorMessage, flushed, warn } from './output.js';

/** The flags `connect` and `load` share. */
export const clientFlags: Readonly<Record<string, FlagSpec>> = {
  to: {
    type: 'string',
    required: true,
    value: 'HOST:PORT',
    help: 'the HBONE server (HBONE uses port 15008)',
  },
  authority: {
    type: 'string',
    required: true,
    value: 'ADDR:PORT',
    help: 'the CONNECT :authority: where the server should take the tunnel (IP:PORT, [IPv6]:PORT or host:port)',
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
    help: 'the bundle of another trust domain (to reach a server of that domain)',
  },
  expect: {
    type: 'string',
    required: true,
    repeat: true,
    value: 'SPIFFE_ID',
    help: 'the identity the server must prove; several mean "any of these"',
  },
  header: {
    type: 'string',
    repeat: true,
    value: 'K=V',
    help: 'a CONNECT header: baggage, forwarded, traceparent or x-forwarded-network',
  },
  sni: { type: 'string', value: 'NAME', help: 'send this TLS SNI (default: none, as ztunnel)' },
  timeout: {
    type: 'string',
    value: 'DURATION',
    help: 'limit for the handshake and for the CONNECT answer, each (default 10s)',
  },
};

export const connectSpec: CommandSpec = {
  name: 'connect',
  summary:
    'Open one HBONE tunnel and pipe stdin into it and its bytes to stdout, like nc. stdin end-of-file half-closes\nthe tunnel (END_STREAM); when the server closes its side, the command exits 0 once stdout is flushed.',
  flags: {
    ...clientFlags,
    verbose: { type: 'boolean', help: 'describe the connection and tunnel on stderr' },
  },
  details: [
    'Headers: --header baggage=k8s.namespace.name=default,k8s.deployment.name=web',
    '         --header forwarded=\'for="10.0.0.1:4000"\'  --header traceparent=00-<32 hex>-<16 hex>-01',
    '         --header x-forwarded-network=network2',
    "The hbone client sends only these four headers (in ztunnel's order); baggage is always sent (empty",
    'by default) and a fresh traceparent is made unless one is given.',
    '',
    'Failures (stderr, non-zero exit): ERR_HBONE_IDENTITY_MISMATCH (the server is not --expect),',
    'ERR_HBONE_TLS (handshake or certificate rejected, either side), ERR_HBONE_CONNECT (TCP),',
    'ERR_HBONE_DENIED (401), ERR_HBONE_UPSTREAM_UNAVAILABLE (503), ERR_HBONE_STREAM_RESET, ERR_HBONE_TIMEOUT.',
    '',
    'Example:',
    '  echo hello | pnpm hbone connect --to 127.0.0.1:15008 --authority 127.0.0.1:8080 \\',
    '    --cert client/cert.pem --key client/key.pem --bundle ca/bundle.pem \\',
    '    --expect spiffe://example.org/ns/default/sa/web',
  ].join('\n'),
};

/** The headers a `TunnelRequest` can carry, by their (lowercase) wire names. */
const HEADER_NAMES = ['baggage', 'forwarded', 'traceparent', 'x-forwarded-network'] as const;

/** `--header K=V`... -> the TunnelRequest fields; values are checked by the same parsers a server uses. */
export function requestFromArgs(authority: string, headers: readonly string[]): TunnelRequest {
  const request: TunnelRequest = { authority };
  const seen = new Set<string>();
  for (const h of headers) {
    const { key, value } = parseKeyValue('header', h);
    const name = key.toLowerCase();
    if (!(HEADER_NAMES as readonly string[]).includes(name)) {
      throw new UsageError(
        `--header ${key}: the hbone client sends only ${HEADER_NAMES.join(', ')} (ztunnel's CONNECT headers)`,
      );
    }
    if (seen.has(name)) throw new UsageError(`--header ${name} given twice`);
    seen.add(name);
    const check = (fn: () => unknown): void => {
      try {
        fn();
      } catch (err) {
        throw new CliError(errorCode(err), `--header ${name}: ${errorMessage(err)}`);
      }
    };
    switch (name) {
      case 'baggage':
        check(() => parseBaggage(value));
        request.baggage = value;
        break;
      case 'forwarded':
        check(() => parseForwarded(value));
        request.forwarded = value;
        break;
      case 'traceparent':
        check(() => parseTraceparent(value));
        request.traceparent = value;
        break;
      default:
        check(() => parseForwardedNetwork(value));
        request.forwardedNetwork = value;
    }
  }
  return request;
}

export interface ClientSetup {
  readonly creds: Credentials;
  readonly session: HboneClientSession;
  readonly request: TunnelRequest;
  readonly to: string;
  readonly timeoutMs: number;
  /** TCP + TLS + HTTP/2 SETTINGS, in milliseconds. */
  readonly handshakeMs: number;
}

/** Parses the shared client flags and dials the server. */
export async function dialFromArgs(
  command: string,
  args: ParsedArgs,
  extra: { maxStreams?: number } = {},
): Promise<ClientSetup> {
  const target = parseHostPort('to', required(args, 'to'));
  const expected = (args.all.get('expect') ?? []).map((e) => {
    try {
      return SpiffeId.parse(e);
    } catch (err) {
      throw new CliError(errorCode(err), `--expect ${e}: ${errorMessage(err)}`);
    }
  });
  const request = requestFromArgs(required(args, 'authority'), args.all.get('header') ?? []);
  const timeout = args.strings.get('timeout');
  const timeoutMs = timeout === undefined ? 10_000 : parseDurationMs('timeout', timeout);
  if (timeoutMs === 0) throw new UsageError('--timeout must be more than 0');
  const sni = args.strings.get('sni');
  const creds = loadCredentials({
    cert: required(args, 'cert'),
    key: required(args, 'key'),
    bundle: required(args, 'bundle'),
    federate: args.all.get('federate') ?? [],
  });
  for (const w of creds.warnings) warn(`hbone ${command}: warning: ${w}`);
  const started = performance.now();
  const session = await connect(target, {
    svidSource: creds.svidSource,
    bundleSource: creds.bundleSource,
    expectedIdentities: expected,
    ...(sni !== undefined ? { sni: { name: sni } } : {}),
    handshakeTimeoutMs: timeoutMs,
    connectResponseTimeoutMs: timeoutMs,
    ...(extra.maxStreams !== undefined ? { maxStreams: extra.maxStreams } : {}),
  });
  const handshakeMs = performance.now() - started;
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return { creds, session, request, to: `${host}:${target.port}`, timeoutMs, handshakeMs };
}

/** Waits for `event` on `emitter`, at most `ms`. */
function eventOrTimeout(emitter: NodeJS.EventEmitter, event: string, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      emitter.removeListener(event, done);
      resolve();
    }
    emitter.once(event, done);
  });
}

export async function runConnect(args: ParsedArgs): Promise<number> {
  const setup = await dialFromArgs('connect', args);
  const { session, request } = setup;
  const verbose = args.switches.has('verbose');
  if (verbose) {
    const t = session.tls;
    warn(
      `hbone connect: connected to ${setup.to} in ${setup.handshakeMs.toFixed(1)} ms: peer ${session.peerIdentity}, ` +
        `we are ${setup.creds.svid.id}, ${t.protocol} ${t.cipher} ALPN ${t.alpn}`,
    );
  }
  let tunnel: HboneTunnel;
  try {
    tunnel = await session.open(request);
  } catch (err) {
    session.destroy();
    throw err;
  }
  if (verbose) {
    warn(
      `hbone connect: tunnel ${tunnel.streamId} open to ${tunnel.authority} (baggage ${JSON.stringify(
        String(tunnel.requestHeaders.baggage ?? ''),
      )}, traceparent ${String(tunnel.requestHeaders.traceparent ?? 'none')})`,
    );
  }
  return pipeStdio(tunnel, session, verbose);
}

/** stdin -> tunnel, tunnel -> stdout, with half-close both ways; resolves with the exit status. */
function pipeStdio(tunnel: HboneTunnel, session: HboneClientSession, verbose: boolean): Promise<number> {
  const stdin = process.stdin;
  const stdout = process.stdout;
  return new Promise<number>((resolve) => {
    let done = false;
    const finish = async (status: number, err?: unknown): Promise<void> => {
      if (done) return;
      done = true;
      stdin.unpipe(tunnel);
      stdin.pause();
      if (err !== undefined) warn(errorLine('connect', err));
      if (status === 0) {
        await flushed(stdout);
        // The peer has ended its side; if stdin has not, we stop sending now (as nc does).
        if (!tunnel.writableEnded) tunnel.end();
        if (!tunnel.destroyed) await eventOrTimeout(tunnel, 'close', 2_000);
        // After the server's GOAWAY node:http2 closes the session on its own (and a second
        // close() would wait for nothing): only an open session needs our GOAWAY.
        if (session.state === 'open') await closeWithin(session, 2_000);
      }
      session.destroy();
      if (verbose) {
        warn(`hbone connect: closed: sent ${tunnel.bytesSent} bytes, received ${tunnel.bytesReceived} bytes`);
      }
      resolve(status);
    };
    tunnel.on('error', (err) => void finish(1, err));
    tunnel.on('end', () => void finish(0));
    stdout.on('error', (err: NodeJS.ErrnoException) => {
      // The reader went away (`| head`): not our failure.
      if (err.code === 'EPIPE') {
        tunnel.destroy();
        void finish(0);
      } else void finish(1, err);
    });
    stdin.on('error', (err) => {
      tunnel.destroy(err);
      void finish(1, err);
    });
    tunnel.pipe(stdout, { end: false });
    stdin.pipe(tunnel);
  });
}
