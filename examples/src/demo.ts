/**
 * `pnpm demo`: one HBONE tunnel from end to end, in one process, on 127.0.0.1.
 *
 * In a temporary directory: a CA for a trust domain and two X509-SVIDs, made and loaded the way
 * the `hbone` command does it (`ca init`, `ca issue`, `--cert/--key/--bundle`); a plain TCP echo
 * service; an HBONE server that forwards each tunnel to its `:authority` (ztunnel's inbound); a
 * client that dials it with mutual TLS 1.3, checks the server's SPIFFE identity, opens a CONNECT
 * to the echo service with baggage, sends 1 MiB of random bytes, half-closes and reads the echo
 * back. The bytes are verified by SHA-256, and a table shows what each side observed. Every cell
 * is read from the live objects (sessions, sockets, tunnels); nothing is canned.
 *
 * Exits 0 when the echo matches, 1 otherwise, and within ~10 s whatever happens.
 * `--keep` leaves the certificate files in place (their paths are printed).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect,
  createServer,
  forwardHandler,
  type HboneClientSession,
  type HboneServer,
  type IncomingTunnel,
  type JoinResult,
  type ServerConnectionInfo,
  type WorkloadAttributes,
} from '@hbone/hbone';
import { initCa, issueSvid } from './cli/ca.js';
import { loadCredentials } from './cli/credentials.js';
import { closeWithin, errorLine } from './cli/output.js';

const TRUST_DOMAIN = 'demo.example';
const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/client`;
const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/demo/sa/server`;
const PAYLOAD_BYTES = 1024 * 1024;
const DEADLINE_MS = 10_000;

const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const short = (hash: string): string => `sha256:${hash.slice(0, 16)}...`;

interface EchoService {
  server: net.Server;
  port: number;
  /** What the echo service received, for the table. */
  received: { bytes: number; hash: ReturnType<typeof createHash> };
}

/** A TCP echo with half-close: the client's FIN ends our side after the last byte goes back. */
async function startEcho(): Promise<EchoService> {
  const received = { bytes: 0, hash: createHash('sha256') };
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('data', (d) => {
      received.bytes += d.length;
      received.hash.update(d);
    });
    socket.on('error', () => socket.destroy());
    socket.pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as net.AddressInfo).port, received };
}

/** What the server side saw of the connection and the tunnel, filled in as events arrive. */
interface ServerView {
  tls?: { protocol: string | null; cipher: string; alpn: string | false };
  tunnel?: IncomingTunnel;
  result?: JoinResult & { status: number };
}

function row(cells: readonly string[], widths: readonly number[]): string {
  return cells
    .map((c, i) => c.padEnd(widths[i]!))
    .join('  ')
    .trimEnd();
}

function table(header: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const rule = widths.map((w) => '-'.repeat(w));
  return [row(header, widths), row(rule, widths), ...rows.map((r) => row(r, widths))].join('\n');
}

function workloadText(w: WorkloadAttributes): string {
  const parts = [
    w.namespace && `namespace ${w.namespace}`,
    w.workloadName && `${w.workloadKind ?? 'deployment'} ${w.workloadName}`,
    w.serviceName && `service ${w.serviceName}`,
  ].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : '(none)';
}

async function run(dir: string, say: (line: string) => void): Promise<boolean> {
  // 1. A CA and two SVIDs on disk, exactly as `hbone ca init` / `hbone ca issue` write them.
  const ca = await initCa({ trustDomain: TRUST_DOMAIN, out: join(dir, 'ca') });
  const clientFiles = await issueSvid({ ca: ca.dir, id: CLIENT_ID, out: join(dir, 'client') });
  const serverFiles = await issueSvid({ ca: ca.dir, id: SERVER_ID, out: join(dir, 'server') });
  say(`1. CA for trust domain ${ca.trustDomain}: ${ca.caPath}`);
  say(
    `2. SVIDs: ${clientFiles.id} and ${serverFiles.id} (valid until ${serverFiles.notAfter.toISOString()})`,
  );

  // Loaded as `--cert --key --bundle` are.
  const clientCreds = loadCredentials({
    cert: clientFiles.certPath,
    key: clientFiles.keyPath,
    bundle: ca.bundlePath,
  });
  const serverCreds = loadCredentials({
    cert: serverFiles.certPath,
    key: serverFiles.keyPath,
    bundle: ca.bundlePath,
  });

  // 2. The TCP service behind the HBONE server.
  const echo = await startEcho();
  say(`3. TCP echo service on 127.0.0.1:${echo.port}`);

  // 3. The HBONE server: forwards each tunnel to its :authority.
  const view: ServerView = {};
  let server: HboneServer | undefined;
  let session: HboneClientSession | undefined;
  try {
    server = createServer({
      svidSource: serverCreds.svidSource,
      bundleSource: serverCreds.bundleSource,
      handler: forwardHandler({
        onComplete: (_t, result) => {
          view.result = result;
        },
      }),
    });
    server.on('connection', (info: ServerConnectionInfo) => {
      const s = info.socket;
      view.tls = {
        protocol: s.getProtocol(),
        cipher: s.getCipher().standardName,
        alpn: s.alpnProtocol ?? false,
      };
    });
    server.on('tunnel', (t: IncomingTunnel) => {
      view.tunnel = t;
    });
    server.on('clientError', (err: unknown) => say(`   server: ${errorLine('demo', err)}`));
    const { port } = await server.listen(0, '127.0.0.1');
    say(`4. HBONE server on 127.0.0.1:${port} as ${serverCreds.svid.id}, forwarding`);

    // 4. The client: mutual TLS 1.3, the server must be SERVER_ID.
    session = await connect(
      { host: '127.0.0.1', port },
      {
        svidSource: clientCreds.svidSource,
        bundleSource: clientCreds.bundleSource,
        expectedIdentities: [SERVER_ID],
      },
    );
    const baggage: WorkloadAttributes = { namespace: 'demo', workloadName: 'client', serviceName: 'client' };
    const authority = `127.0.0.1:${echo.port}`;
    const tunnel = await session.open({ authority, baggage });
    say(
      `5. tunnel ${tunnel.streamId} open: CONNECT ${tunnel.authority}; sending ${PAYLOAD_BYTES} random bytes`,
    );

    const sent = randomBytes(PAYLOAD_BYTES);
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      tunnel.on('data', (d: Buffer) => chunks.push(d));
      tunnel.once('end', () => resolve(Buffer.concat(chunks)));
      tunnel.once('error', reject);
      tunnel.end(sent); // END_STREAM after the last byte; reading goes on
    });
    await new Promise<void>((resolve) => (tunnel.closed ? resolve() : tunnel.once('close', () => resolve())));
    // The server's forwarder reports once both directions are done; give it a moment.
    for (let i = 0; i < 100 && view.result === undefined; i++) await new Promise((r) => setTimeout(r, 10));

    const sentHash = sha256(sent);
    const echoedHash = sha256(echoed);
    const upstreamHash = echo.received.hash.digest('hex');
    const ok = echoed.length === sent.length && echoedHash === sentHash && upstreamHash === sentHash;

    const c = session.tls;
    const t = view.tunnel;
    const r = view.result;
    const st = view.tls;
    const conn = t?.connection;
    const rows: string[][] = [
      ['our identity', clientCreds.svid.id.toString(), serverCreds.svidSource.getX509Svid().id.toString()],
      [
        'peer identity (verified)',
        session.peerIdentity.toString(),
        t ? t.peerIdentity.toString() : '(no tunnel)',
      ],
      ['TLS version', String(c.protocol), String(st?.protocol ?? '?')],
      ['cipher', c.cipher, st?.cipher ?? '?'],
      ['ALPN', String(c.alpn), String(st?.alpn ?? '?')],
      [
        'connection',
        `${session.localAddress} -> ${session.remoteAddress}`,
        conn ? `${conn.localAddress}:${conn.localPort} <- ${conn.remoteAddress}:${conn.remotePort}` : '?',
      ],
      ['CONNECT :authority', `${tunnel.authority} (sent)`, t ? `${t.authorityString} (received)` : '?'],
      ['baggage', String(tunnel.requestHeaders.baggage ?? ''), t ? workloadText(t.workload()) : '?'],
      [
        'traceparent',
        String(tunnel.requestHeaders.traceparent ?? '(none)'),
        t?.traceparent()?.traceId ?? '(none)',
      ],
      ['CONNECT answer', String(tunnel.responseHeaders[':status']), r ? String(r.status) : '?'],
      [
        'bytes sent',
        `${tunnel.bytesSent} into the tunnel`,
        r ? `${r.bytesToTunnel} back into the tunnel` : '?',
      ],
      [
        'bytes received',
        `${tunnel.bytesReceived} from the tunnel`,
        r ? `${r.bytesFromTunnel} from the tunnel, to ${authority}` : '?',
      ],
      ['payload hash', `${short(sentHash)} sent`, `${short(upstreamHash)} at the echo service`],
      ['echo hash', `${short(echoedHash)} received`, ''],
    ];
    say('');
    say(table(['', 'client', 'server'], rows));
    say('');
    say(
      ok
        ? `OK: ${echoed.length} bytes went through HBONE to the echo service and back, identical (sha256 ${sentHash.slice(0, 16)}...).`
        : `FAILED: sent ${sent.length} bytes (${short(sentHash)}), echo service saw ${echo.received.bytes} (${short(upstreamHash)}), got back ${echoed.length} (${short(echoedHash)}).`,
    );
    return ok;
  } finally {
    session?.destroy();
    if (server) await closeWithin(server, 2_000);
    echo.server.close();
    clientCreds.close();
    serverCreds.close();
  }
}

async function main(): Promise<number> {
  const keep = process.argv.includes('--keep');
  const dir = mkdtempSync(join(tmpdir(), 'hbone-demo-'));
  const say = (line: string): void => {
    process.stdout.write(`${line}\n`);
  };
  say(`hbone demo: one HBONE tunnel, end to end (files in ${dir})`);
  const watchdog = setTimeout(() => {
    process.stderr.write(`hbone demo: ERR_DEMO_TIMEOUT: not done after ${DEADLINE_MS} ms\n`);
    if (!keep) rmSync(dir, { recursive: true, force: true });
    process.exit(1);
  }, DEADLINE_MS);
  try {
    return (await run(dir, say)) ? 0 : 1;
  } catch (err) {
    process.stderr.write(`${errorLine('demo', err)}\n`);
    return 1;
  } finally {
    clearTimeout(watchdog);
    if (keep) say(`files kept in ${dir}: try "pnpm hbone inspect ${join(dir, 'server', 'cert.pem')}"`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

process.exit(await main());
