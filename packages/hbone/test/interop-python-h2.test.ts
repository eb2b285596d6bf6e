/**
 * Interoperability with an HTTP/2 stack we did not write: Python's `h2` (Debian python3-h2, run
 * by /usr/bin/python3) over the standard library's `ssl`. The foreign peers are
 * `interop/h2_server.py` and `interop/h2_client.py`; docs/interop.md says what each assertion
 * pins. Without h2 every test here fails (run `node scripts/ensure-test-deps.mjs`): they never
 * skip.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type MintedSvid, TestCa, writeSvidFiles } from '@hbone/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TunnelRequest } from '../src/connect-request.js';
import {
  ConnectDeniedError,
  ConnectRefusedError,
  connect,
  createServer,
  forwardHandler,
  H2_CODES,
  type HboneClientSession,
  type HboneServer,
  type HboneServerOptions,
  IdentityMismatchError,
  type IncomingTunnel,
  TlsHandshakeError,
  type TunnelHandler,
  UpstreamUnavailableError,
} from '../src/index.js';
import { echoServer, payload, readAll, sha256 } from './fixtures.js';
import { type Identity, identityFromMinted } from './identity.js';

const PYTHON = '/usr/bin/python3';
const INTEROP_DIR = fileURLToPath(new URL('./interop/', import.meta.url));
const MiB = 1024 * 1024;

const TRUST_DOMAIN = 'cluster.local';
const OTHER_TRUST_DOMAIN = 'other.example';
const SERVER_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/server`;
const CLIENT_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/client`;
const IMPOSTOR_ID = `spiffe://${TRUST_DOMAIN}/ns/default/sa/impostor`;
const FOREIGN_CLIENT_ID = `spiffe://${OTHER_TRUST_DOMAIN}/ns/default/sa/client`;

// SETTINGS identifiers (RFC 9113 section 6.5.2).
const ENABLE_PUSH = 0x2;
const MAX_CONCURRENT_STREAMS = 0x3;
const INITIAL_WINDOW_SIZE = 0x4;
const MAX_FRAME_SIZE = 0x5;
const MAX_HEADER_LIST_SIZE = 0x6;
/** What a 16 MiB connection window takes on top of the 65,535 bytes every connection starts with. */
const CONNECTION_WINDOW_INCREMENT = 16 * MiB - 65_535;

// ---------------------------------------------------------------------------------------------
// What the Python peers report (see the docstrings of the .py files).

interface Frame {
  index: number;
  type: string;
  flags: number;
  stream: number;
  length: number;
  ack?: boolean;
  settings?: Array<[number, number]>;
  increment?: number;
  code?: number;
  last_stream?: number;
}

interface TapReport {
  preface_ok: boolean | null;
  frames: Frame[];
  frame_count: number;
  data_frames: number;
  data_bytes: number;
  first_data_index: number | null;
  end_stream: Record<string, { type: 'DATA' | 'HEADERS'; length: number; index: number }>;
  headers_frames: Record<string, number>;
}

interface TlsFacts {
  version: string;
  cipher: string;
  alpn: string | null;
}

interface ClientStream {
  kind: string;
  authority: string;
  stream: number | null;
  status: number | null;
  response_headers: Array<[string, string]> | null;
  trailers: Array<[string, string]> | null;
  reset_code: number | null;
  bytes_sent: number;
  bytes_received: number;
  sent_sha256: string;
  received_sha256: string;
  ended_local: boolean;
  ended_remote: boolean;
  eof: 'end_stream' | 'reset' | null;
  echo_ok: boolean;
}

interface ClientResult {
  event: 'result';
  exit_code: number;
  error?: string;
  detail?: string;
  tls?: TlsFacts;
  peer_ids?: string[];
  tap?: TapReport;
  streams?: ClientStream[];
  goaway?: { code: number; last_stream: number };
}

interface ServerRequest {
  stream: number;
  headers: Array<[string, string]>;
  status: number;
  bytes_in: number;
  sha256_in: string;
  bytes_out: number;
  ended_remote: boolean;
  ended_local: boolean;
  reset_code: number | null;
}

interface ServerConnection {
  event: 'connection';
  error?: string;
  detail?: string;
  eof?: boolean;
  tls?: TlsFacts;
  peer_ids?: string[];
  requests: ServerRequest[];
  trailers: unknown[];
  tap: TapReport;
  goaway?: { code: number; last_stream: number };
}

// ---------------------------------------------------------------------------------------------
// The foreign stack must be there: a missing h2 fails every test (it never skips them).

let h2Problem: string | undefined | null = null;
function requireH2(): void {
  if (h2Problem === null) {
    const r = spawnSync(PYTHON, ['-I', '-B', '-c', 'import h2, sys; print(h2.__version__)'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    h2Problem =
      r.status === 0
        ? undefined
        : `${PYTHON} cannot import h2 (${(r.error?.message ?? r.stderr ?? '').trim()}): ` +
          'install Debian python3-h2 (`apt-get install python3-h2`, or run `node scripts/ensure-test-deps.mjs` as root)';
  }
  if (h2Problem !== undefined) throw new Error(h2Problem);
}

/** A running Python peer: its stdout as parsed JSON lines, its stderr, its exit. */
interface PythonPeer {
  readonly proc: ChildProcess;
  readonly lines: Array<Record<string, unknown>>;
  stderr(): string;
  /** The next line (from the start) matching `pred`, waiting up to `timeoutMs`. */
  line<T>(pred: (l: Record<string, unknown>) => boolean, timeoutMs?: number): Promise<T>;
  readonly exited: Promise<number | null>;
}

const peers: PythonPeer[] = [];
const cleanups: Array<() => unknown> = [];

function spawnPython(script: string, args: string[], env: NodeJS.ProcessEnv = {}): PythonPeer {
  requireH2();
  // -I: no PYTHONPATH or user site-packages (only Debian's dist-packages); -B: no __pycache__.
  const proc = spawn(PYTHON, ['-I', '-B', join(INTEROP_DIR, script), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let out = '';
  let err = '';
  proc.stdout!.setEncoding('utf8');
  proc.stderr!.setEncoding('utf8');
  proc.stdout!.on('data', (chunk: string) => {
    out += chunk;
    let nl = out.indexOf('\n');
    while (nl >= 0) {
      const text = out.slice(0, nl).trim();
      out = out.slice(nl + 1);
      if (text) lines.push(JSON.parse(text) as Record<string, unknown>);
      nl = out.indexOf('\n');
    }
    for (const w of waiters) w();
  });
  proc.stderr!.on('data', (chunk: string) => {
    err += chunk;
  });
  proc.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => {
    proc.once('exit', (code) => {
      for (const w of waiters) w();
      resolve(code);
    });
    proc.once('error', (e) => {
      err += String(e);
      resolve(null);
    });
  });
  const peer: PythonPeer = {
    proc,
    lines,
    exited,
    stderr: () => err,
    line<T>(pred: (l: Record<string, unknown>) => boolean, timeoutMs = 20_000): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const check = (): void => {
          const found = lines.find(pred);
          if (found) {
            done();
            resolve(found as T);
          } else if (proc.exitCode !== null || proc.signalCode !== null) {
            done();
            reject(
              new Error(`${script} exited (${proc.exitCode ?? proc.signalCode}) first; stderr:\n${err}`),
            );
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${script}: no matching line within ${timeoutMs} ms; stderr:\n${err}`));
        }, timeoutMs);
        const done = (): void => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
  };
  peers.push(peer);
  return peer;
}

async function stopPeers(): Promise<void> {
  for (const p of peers.splice(0)) {
    p.proc.stdin?.end();
    if (p.proc.exitCode === null && p.proc.signalCode === null) {
      p.proc.kill('SIGKILL');
      await p.exited;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Identities: one CA per trust domain, PEM files for Python, static sources for us.

interface Files {
  certPath: string;
  keyPath: string;
}

let dir: string;
let bundle: string; // cluster.local roots
const files: Record<'server' | 'client' | 'impostor' | 'foreignClient', Files> = {} as never;
const ours: Record<'server' | 'federatedServer' | 'client', Identity> = {} as never;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'hbone-interop-'));
  const ca = await TestCa.create(TRUST_DOMAIN);
  const otherCa = await TestCa.create(OTHER_TRUST_DOMAIN);
  bundle = (await ca.writeFiles(join(dir, 'ca'))).bundlePath;
  const minted: Record<keyof typeof files, MintedSvid> = {
    server: await ca.mint(SERVER_ID),
    client: await ca.mint(CLIENT_ID),
    impostor: await ca.mint(IMPOSTOR_ID),
    foreignClient: await otherCa.mint(FOREIGN_CLIENT_ID),
  };
  for (const [name, svid] of Object.entries(minted)) {
    files[name as keyof typeof files] = await writeSvidFiles(svid, join(dir, name));
  }
  ours.server = identityFromMinted(minted.server, [ca]);
  // Trusts other.example's bundle too: a foreign client's chain verifies, its domain is still not ours.
  ours.federatedServer = identityFromMinted(minted.server, [ca, otherCa]);
  ours.client = identityFromMinted(minted.client, [ca]);
});

afterEach(async () => {
  await stopPeers();
  for (const c of cleanups.splice(0).reverse()) await c();
});

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Helpers for each direction.

interface OurServer {
  srv: HboneServer;
  port: number;
  tunnels: IncomingTunnel[];
  clientErrors: Error[];
}

async function ourServer(
  handler: TunnelHandler,
  extra: Partial<HboneServerOptions> = {},
  id: Identity = ours.server,
): Promise<OurServer> {
  const srv = createServer({ ...id.sources, handler, ...extra });
  const tunnels: IncomingTunnel[] = [];
  const clientErrors: Error[] = [];
  srv.on('tunnel', (t: IncomingTunnel) => tunnels.push(t));
  srv.on('clientError', (e: Error) => clientErrors.push(e));
  const { port } = await srv.listen(0, '127.0.0.1');
  cleanups.push(() => srv.destroy());
  return { srv, port, tunnels, clientErrors };
}

interface ClientRun {
  port: number;
  requests?: string[];
  streams?: number;
  bytes?: number;
  authority?: string;
  expectEcho?: boolean;
  alpn?: string;
  as?: Files;
  trust?: string;
  expectServerId?: string;
  /** TLS 1.3 suites their OpenSSL may use, in preference order (Python's ssl cannot set them). */
  tls13Suites?: string[];
}

/** Runs h2_client.py to completion and returns its JSON result (exit code included). */
async function theirClient(run: ClientRun): Promise<ClientResult> {
  const as = run.as ?? files.client;
  const args = [
    '--port',
    String(run.port),
    '--bundle',
    run.trust ?? bundle,
    '--cert',
    as.certPath,
    '--key',
    as.keyPath,
    '--expect-server-id',
    run.expectServerId ?? SERVER_ID,
    '--timeout',
    '25',
  ];
  for (const r of run.requests ?? []) args.push('--request', r);
  if (run.streams) args.push('--streams', String(run.streams));
  if (run.bytes) args.push('--bytes', String(run.bytes));
  if (run.authority) args.push('--authority', run.authority);
  if (run.expectEcho) args.push('--expect-echo');
  if (run.alpn !== undefined) args.push('--alpn', run.alpn);
  const peer = spawnPython('h2_client.py', args, await suitesEnv(run.tls13Suites));
  const result = await peer.line<ClientResult>((l) => l.event === 'result', 28_000);
  const code = await peer.exited;
  expect(result.exit_code, `h2_client.py stderr:\n${peer.stderr()}`).toBe(code);
  return result;
}

interface ServerRun {
  status?: number;
  as?: Files;
  expectClientId?: string;
  responseBaggage?: string;
  /** After a 200: echo as bytes come, echo only after our END_STREAM, or greet and end first. */
  reply?: 'echo' | 'after-eof' | 'first';
  tls13Suites?: string[];
}

/**
 * Python's `ssl` has no API for TLS 1.3 suites; OpenSSL reads them from its configuration file
 * (`system_default`), so a peer limited to some suites runs with its own OPENSSL_CONF.
 */
async function suitesEnv(suites: string[] | undefined): Promise<NodeJS.ProcessEnv> {
  if (!suites) return {};
  const path = join(dir, `openssl-${suites.join('_')}.cnf`);
  await writeFile(
    path,
    [
      'openssl_conf = openssl_init',
      '[openssl_init]',
      'ssl_conf = ssl_sect',
      '[ssl_sect]',
      'system_default = system_default_sect',
      '[system_default_sect]',
      `Ciphersuites = ${suites.join(':')}`,
      '',
    ].join('\n'),
  );
  return { OPENSSL_CONF: path };
}

/** Starts h2_server.py; resolves with its port and a way to read its per-connection reports. */
async function theirServer(run: ServerRun = {}): Promise<{
  port: number;
  connection: (n?: number) => Promise<ServerConnection>;
}> {
  const as = run.as ?? files.server;
  const args = [
    '--bundle',
    bundle,
    '--cert',
    as.certPath,
    '--key',
    as.keyPath,
    '--expect-client-id',
    run.expectClientId ?? CLIENT_ID,
    '--status',
    String(run.status ?? 200),
    '--lifetime',
    '40',
    '--exit-on-stdin-eof',
  ];
  if (run.responseBaggage !== undefined) args.push('--response-baggage', run.responseBaggage);
  if (run.reply !== undefined) args.push('--reply', run.reply);
  const peer = spawnPython('h2_server.py', args, await suitesEnv(run.tls13Suites));
  const listening = await peer.line<{ port: number }>((l) => l.event === 'listening');
  return {
    port: listening.port,
    connection: async (n = 0) => {
      let seen = -1;
      return peer.line<ServerConnection>((l) => l.event === 'connection' && ++seen === n);
    },
  };
}

async function ourClient(port: number, expected: string[] = [SERVER_ID]): Promise<HboneClientSession> {
  const session = await connect(
    { host: '127.0.0.1', port },
    { ...ours.client.sources, expectedIdentities: expected },
  );
  cleanups.push(() => session.destroy());
  return session;
}

/** Our client opens one tunnel with `request` to a fresh h2_server.py, ends it and closes; its report. */
async function afterOneEmptyTunnel(request: TunnelRequest): Promise<ServerConnection> {
  const py = await theirServer();
  const session = await ourClient(py.port);
  const tunnel = await session.open(request);
  tunnel.end();
  await readAll(tunnel);
  await session.close();
  return py.connection();
}

/** Opens a tunnel, sends `data` and our END_STREAM, and returns what came back up to the peer's. */
async function roundTrip(session: HboneClientSession, authority: string, data: Buffer): Promise<Buffer> {
  const tunnel = await session.open({ authority });
  const back = readAll(tunnel);
  tunnel.end(data);
  return back;
}

function settingsMap(f: Frame | undefined): Map<number, number> {
  return new Map((f?.settings ?? []).map(([k, v]) => [k, v]));
}

/** The first SETTINGS frame a peer sent (not an ACK) and the frames around it. */
function firstSettings(tap: TapReport): Frame | undefined {
  return tap.frames.find((f) => f.type === 'SETTINGS' && !f.ack);
}

function framesBefore(tap: TapReport, frame: Frame): Frame[] {
  return tap.frames.filter((f) => f.index < frame.index);
}

function names(headers: Array<[string, string]>): string[] {
  return headers.map(([n]) => n);
}

const TLS13_AES_GCM = ['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256'];

// ---------------------------------------------------------------------------------------------

describe('the foreign stack', () => {
  it('is Python h2 under /usr/bin/python3 (python3-h2), importable without PYTHONPATH', () => {
    requireH2();
    const r = spawnSync(
      PYTHON,
      ['-I', '-B', '-c', 'import h2, ssl; print(h2.__version__, ssl.HAS_TLSv1_3)'],
      {
        encoding: 'utf8',
      },
    );
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toMatch(/^\d+\.\d+\.\d+ True$/);
  });
});

describe('their client (Python h2) -> our server', () => {
  it('carries one 1 MiB CONNECT stream byte for byte through forwardHandler to a TCP echo, with half-close', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const { port, tunnels } = await ourServer(forwardHandler());
    const r = await theirClient({
      port,
      streams: 1,
      bytes: MiB,
      authority: `127.0.0.1:${echo.port}`,
      expectEcho: true,
    });
    expect(r.error).toBeUndefined();
    expect(r.exit_code).toBe(0);
    const [s] = r.streams!;
    expect(s).toMatchObject({
      status: 200,
      trailers: null,
      bytes_sent: MiB,
      bytes_received: MiB,
      ended_local: true,
      echo_ok: true,
    });
    expect(s!.eof).toBe('end_stream'); // END_STREAM, as ztunnel ends; never a reset
    expect(r.tap!.frames.filter((f) => f.type === 'RST_STREAM')).toEqual([]);
    expect(s!.received_sha256).toBe(s!.sent_sha256);
    expect(s!.response_headers).toEqual([[':status', '200']]);
    expect(tunnels.map((t) => t.authorityString)).toEqual([`127.0.0.1:${echo.port}`]);
    expect(tunnels[0]!.peerIdentity.toString()).toBe(CLIENT_ID);
  });

  it('carries 10 concurrent 1 MiB CONNECT streams on one connection, each byte for byte', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const { port, srv } = await ourServer(forwardHandler());
    let connections = 0;
    srv.on('connection', () => connections++);
    const r = await theirClient({
      port,
      streams: 10,
      bytes: MiB,
      authority: `127.0.0.1:${echo.port}`,
      expectEcho: true,
    });
    expect(r.exit_code).toBe(0);
    expect(r.streams).toHaveLength(10);
    expect(r.streams!.map((s) => s.stream)).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    for (const s of r.streams!) {
      expect(s).toMatchObject({ status: 200, bytes_sent: MiB, bytes_received: MiB, echo_ok: true });
      expect(s.received_sha256).toBe(s.sent_sha256);
      expect(s.eof).toBe('end_stream');
    }
    expect(r.tap!.frames.filter((f) => f.type === 'RST_STREAM')).toEqual([]);
    expect(new Set(r.streams!.map((s) => s.sent_sha256)).size).toBe(10);
    expect(connections).toBe(1);
  });

  it('keeps its write side open after the client END_STREAM: replies only after reading to EOF', async () => {
    let sawEofFirst = false;
    const { port } = await ourServer(async (t) => {
      const tunnel = t.accept();
      const got = await readAll(tunnel);
      sawEofFirst = tunnel.bytesSent === 0;
      tunnel.end(got);
    });
    const r = await theirClient({ port, streams: 1, bytes: MiB, expectEcho: true });
    expect(r.exit_code).toBe(0);
    expect(r.streams![0]).toMatchObject({ status: 200, echo_ok: true, ended_remote: true });
    expect(sawEofFirst).toBe(true);
  });

  it('keeps reading after its own END_STREAM: a client still sending after our FIN is received in full', async () => {
    let received: Promise<Buffer> | undefined;
    const { port } = await ourServer((t) => {
      const tunnel = t.accept();
      received = readAll(tunnel);
      tunnel.end('hello'); // our FIN first, before any of the client's bytes
    });
    const r = await theirClient({ port, streams: 1, bytes: MiB });
    expect(r.exit_code).toBe(0);
    const [s] = r.streams!;
    expect(s).toMatchObject({ status: 200, bytes_received: 5, bytes_sent: MiB, ended_remote: true });
    expect(s!.received_sha256).toBe(sha256(Buffer.from('hello')));
    const got = await received!;
    expect(got.length).toBe(MiB);
    expect(sha256(got)).toBe(s!.sent_sha256);
  });

  it("sends ztunnel's server SETTINGS, then opens the connection window to 16 MiB before any response", async () => {
    const { port } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, requests: ['connect@10.0.0.2:80'] });
    expect(r.exit_code).toBe(0);
    const tap = r.tap!;
    expect(tap.frames[0]?.type).toBe('SETTINGS'); // the server preface is a SETTINGS frame
    const settings = firstSettings(tap)!;
    expect(Object.fromEntries(settingsMap(settings))).toEqual({
      [MAX_CONCURRENT_STREAMS]: 200,
      [INITIAL_WINDOW_SIZE]: 4 * MiB,
      [MAX_FRAME_SIZE]: MiB,
      [MAX_HEADER_LIST_SIZE]: 64 * 1024,
    });
    expect(settings.settings).toHaveLength(4); // each identifier once, nothing else
    const connUpdates = tap.frames.filter((f) => f.type === 'WINDOW_UPDATE' && f.stream === 0);
    const firstHeaders = tap.frames.find((f) => f.type === 'HEADERS')!;
    expect(connUpdates[0]?.increment).toBe(CONNECTION_WINDOW_INCREMENT);
    // Part of the connection preface: only SETTINGS (ours, or the ACK of the client's) before it.
    expect(framesBefore(tap, connUpdates[0]!).every((f) => f.type === 'SETTINGS')).toBe(true);
    expect(connUpdates[0]!.index).toBeLessThan(firstHeaders.index);
    expect(r.streams![0]!.status).toBe(503);
  });

  it('negotiates TLS 1.3 with ALPN h2 and an AES-GCM suite, and presents the server SPIFFE ID', async () => {
    const { port } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, requests: ['connect@10.0.0.2:80'] });
    expect(r.tls?.version).toBe('TLSv1.3');
    expect(r.tls?.alpn).toBe('h2');
    expect(TLS13_AES_GCM).toContain(r.tls?.cipher);
    expect(r.peer_ids).toEqual([SERVER_ID]);
  });

  it.each([
    'connect-with-path',
    'connect-with-scheme',
    'connect-with-path-and-scheme',
    'connect-with-protocol',
    'extended-connect',
    'connect-without-authority',
  ])('answers a malformed CONNECT (%s) with RST_STREAM(PROTOCOL_ERROR), never the handler', async (kind) => {
    const { port, tunnels } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, requests: [`${kind}@10.0.0.2:80`] });
    expect(r.exit_code).toBe(0);
    expect(r.streams![0]).toMatchObject({ kind, status: null, reset_code: H2_CODES.PROTOCOL_ERROR });
    const rst = r.tap!.frames.find((f) => f.type === 'RST_STREAM');
    expect(rst).toMatchObject({ stream: 1, code: H2_CODES.PROTOCOL_ERROR });
    expect(r.tap!.frames.some((f) => f.type === 'GOAWAY')).toBe(false); // a stream error only
    expect(tunnels).toHaveLength(0);
  });

  it('resets only the malformed stream: valid CONNECTs on the same connection still succeed', async () => {
    const echo = await echoServer();
    cleanups.push(() => echo.close());
    const { port } = await ourServer(forwardHandler());
    const ok = `connect@127.0.0.1:${echo.port}`;
    const r = await theirClient({
      port,
      requests: [ok, 'connect-with-path@10.0.0.2:80', ok, 'get@10.0.0.2:80', ok],
      bytes: 64 * 1024,
      expectEcho: true,
    });
    expect(r.exit_code).toBe(0);
    expect(r.streams!.map((s) => [s.status, s.reset_code])).toEqual([
      [200, null],
      [null, H2_CODES.PROTOCOL_ERROR],
      [200, null],
      [400, null],
      [200, null],
    ]);
    expect(r.streams!.filter((s) => s.kind === 'connect').every((s) => s.echo_ok)).toBe(true);
  });

  it('answers a GET with 400 and only :status, END_STREAM on the HEADERS', async () => {
    const { port, tunnels } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, requests: ['get@10.0.0.2:80'] });
    expect(r.exit_code).toBe(0);
    expect(r.streams![0]).toMatchObject({
      status: 400,
      reset_code: null,
      ended_remote: true,
      bytes_received: 0,
    });
    expect(r.streams![0]!.response_headers).toEqual([[':status', '400']]);
    expect(r.tap!.end_stream['1']).toMatchObject({ type: 'HEADERS' });
    expect(tunnels).toHaveLength(0);
  });

  it.each([
    '10.0.0.1',
    '10.0.0.1:0',
    '[fd00::1%eth0]:80',
    '10.0.0.1:65536',
    'fd00::1:80',
  ])('answers a CONNECT with the bad authority %s with 400, never the handler', async (authority) => {
    const { port, tunnels } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, requests: [`connect@${authority}`] });
    expect(r.exit_code).toBe(0);
    expect(r.streams![0]).toMatchObject({ authority, status: 400, reset_code: null, ended_remote: true });
    expect(r.streams![0]!.response_headers).toEqual([[':status', '400']]);
    expect(tunnels).toHaveLength(0);
  });

  // ztunnel answers with `:status` alone: src/proxy/inbound.rs `build_response` sets only the
  // status, and src/proxy/h2/server.rs runs the h2 crate's server directly (no hyper, so no
  // automatic `date`). node:http2's `respond()` adds `date` unless told `sendDate: false`.
  it('answers 200, 401 and 400 with :status alone, as ztunnel does (no date header)', async () => {
    const { port } = await ourServer((t) => {
      if (t.authority.port === 1) {
        t.reject(401);
        return;
      }
      t.accept().end();
    });
    const r = await theirClient({
      port,
      requests: ['connect@10.0.0.2:80', 'connect@10.0.0.2:1', 'get@10.0.0.2:80', 'connect@10.0.0.2'],
    });
    expect(r.exit_code).toBe(0);
    expect(r.streams!.map((s) => s.status)).toEqual([200, 401, 400, 400]);
    for (const s of r.streams!) expect(s.response_headers).toEqual([[':status', String(s.status)]]);
  });

  // ztunnel ends a stream with END_STREAM alone (src/proxy/h2.rs `poll_shutdown_inner`: empty DATA
  // with END_STREAM) and sends nothing after it. A tunnel that finished both ways used to be reset
  // by its autoDestroy while our END_STREAM was still queued (tunnel.ts `_destroy`): a
  // RST_STREAM(NO_ERROR) on the closed stream after our END_STREAM, every time our FIN followed
  // theirs at once, or under load a RST_STREAM(CANCEL) overtaking the END_STREAM.
  it('ends a tunnel finished both ways with END_STREAM only: no RST_STREAM after or instead of it', async () => {
    const { port } = await ourServer((t) => {
      const tunnel = t.accept();
      tunnel.resume();
      tunnel.on('end', () => tunnel.end()); // our FIN right after theirs, as forwardHandler often does
    });
    const r = await theirClient({ port, streams: 5, bytes: 1000 });
    expect(r.exit_code).toBe(0);
    expect(r.streams!.map((s) => [s.status, s.bytes_sent, s.eof])).toEqual(
      Array(5).fill([200, 1000, 'end_stream']),
    );
    expect(r.tap!.frames.filter((f) => f.type === 'RST_STREAM')).toEqual([]);
  });

  it('refuses a client from another trust domain even when that domain’s bundle is trusted (federation)', async () => {
    const { port, tunnels, clientErrors } = await ourServer((t) => t.reject(503), {}, ours.federatedServer);
    const r = await theirClient({
      port,
      as: files.foreignClient,
      streams: 1,
      bytes: 1024,
    });
    expect(r.exit_code).toBe(4);
    expect(['connection-closed-before-settings', 'connection-error']).toContain(r.error);
    expect(r.peer_ids).toEqual([SERVER_ID]); // the client had accepted us
    expect(r.tap!.frame_count).toBe(0); // not one HTTP/2 frame reached a rejected client
    expect(tunnels).toHaveLength(0);
    expect(clientErrors).toHaveLength(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    expect(clientErrors[0]!.message).toContain(OTHER_TRUST_DOMAIN);
  });

  it('refuses a client whose chain does not verify against any bundle it holds', async () => {
    const { port, tunnels, clientErrors } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, as: files.foreignClient, streams: 1, bytes: 1024 });
    expect(r.exit_code).toBe(4);
    expect(['connection-closed-before-settings', 'connection-error']).toContain(r.error);
    expect(r.tap!.frame_count).toBe(0);
    expect(tunnels).toHaveLength(0);
    expect(clientErrors.length).toBeGreaterThanOrEqual(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
  });

  it('is refused by their client when our SPIFFE ID is not the one it expects', async () => {
    const { port, tunnels } = await ourServer((t) => t.reject(503));
    const r = await theirClient({
      port,
      streams: 1,
      bytes: 1024,
      expectServerId: `spiffe://${TRUST_DOMAIN}/ns/default/sa/someone-else`,
    });
    expect(r.exit_code).toBe(3);
    expect(r.error).toBe('identity-mismatch');
    expect(r.peer_ids).toEqual([SERVER_ID]);
    expect(tunnels).toHaveLength(0);
  });

  it('picks an AES-GCM suite even when the client prefers ChaCha20-Poly1305', async () => {
    const { port } = await ourServer((t) => t.reject(503));
    const r = await theirClient({
      port,
      requests: ['connect@10.0.0.2:80'],
      tls13Suites: ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'],
    });
    expect(r.exit_code).toBe(0);
    expect(r.tls?.cipher).toBe('TLS_AES_128_GCM_SHA256');
  });

  it('refuses the handshake of a client that offers only ChaCha20-Poly1305 (ztunnel offers no ChaCha20)', async () => {
    const { port, clientErrors } = await ourServer((t) => t.reject(503));
    const r = await theirClient({
      port,
      requests: ['connect@10.0.0.2:80'],
      tls13Suites: ['TLS_CHACHA20_POLY1305_SHA256'],
    });
    expect(r.exit_code).toBe(4);
    expect(r.error).toBe('tls-handshake');
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
  });

  it('refuses a client that offers only http/1.1 in ALPN', async () => {
    const { port, tunnels } = await ourServer((t) => t.reject(503));
    const r = await theirClient({ port, streams: 1, bytes: 1024, alpn: 'http/1.1' });
    expect(r.exit_code).toBe(4);
    // The TLS handshake itself fails with no_application_protocol (RFC 7301), as rustls does.
    expect(r.error).toBe('tls-handshake');
    expect(r.detail).toMatch(/no application protocol/i);
    expect(tunnels).toHaveLength(0);
  });
});

describe('our client -> their server (Python h2)', () => {
  it('carries one 1 MiB tunnel byte for byte, with half-close both ways', async () => {
    const py = await theirServer();
    const session = await ourClient(py.port);
    const data = payload(MiB);
    const back = await roundTrip(session, '10.0.0.2:8080', data);
    expect(back.length).toBe(MiB);
    expect(sha256(back)).toBe(sha256(data));
    await session.close();
    const c = await py.connection();
    expect(c.error).toBeUndefined();
    expect(c.requests).toHaveLength(1);
    expect(c.requests[0]).toMatchObject({
      status: 200,
      bytes_in: MiB,
      sha256_in: sha256(data),
      bytes_out: MiB,
      ended_remote: true,
      ended_local: true,
      reset_code: null,
    });
    expect(c.trailers).toEqual([]);
    expect(c.tap.headers_frames).toEqual({ '1': 1 }); // one HEADERS, no trailers
  });

  it('carries 10 concurrent 1 MiB tunnels on one connection, each byte for byte', async () => {
    const py = await theirServer();
    const session = await ourClient(py.port);
    const sent = Array.from({ length: 10 }, () => payload(MiB));
    const back = await Promise.all(sent.map((d, i) => roundTrip(session, `10.0.0.${i + 1}:8080`, d)));
    for (let i = 0; i < 10; i++) expect(sha256(back[i]!)).toBe(sha256(sent[i]!));
    await session.close();
    const c = await py.connection();
    expect(c.requests).toHaveLength(10);
    const byAuthority = new Map(
      c.requests.map((q) => [q.headers.find(([n]) => n === ':authority')![1], q] as const),
    );
    for (let i = 0; i < 10; i++) {
      const q = byAuthority.get(`10.0.0.${i + 1}:8080`)!;
      expect(q).toMatchObject({
        bytes_in: MiB,
        sha256_in: sha256(sent[i]!),
        ended_remote: true,
        ended_local: true,
      });
    }
  });

  it('keeps reading after its own END_STREAM: a server that replies only after it is heard in full', async () => {
    const py = await theirServer({ reply: 'after-eof' });
    const session = await ourClient(py.port);
    const data = payload(MiB);
    const tunnel = await session.open({ authority: '10.0.0.2:8080' });
    const back = readAll(tunnel);
    tunnel.end(data);
    const got = await back;
    expect(sha256(got)).toBe(sha256(data));
    await session.close();
    const c = await py.connection();
    expect(c.requests[0]).toMatchObject({
      bytes_in: MiB,
      bytes_out: MiB,
      ended_remote: true,
      ended_local: true,
    });
  });

  it('keeps sending after their END_STREAM: a server that ends first still receives every byte', async () => {
    const py = await theirServer({ reply: 'first' });
    const session = await ourClient(py.port);
    const tunnel = await session.open({ authority: '10.0.0.2:8080' });
    const greeting = await readAll(tunnel); // their END_STREAM: our read side ends...
    expect(greeting.toString()).toBe('hello');
    const data = payload(MiB);
    await new Promise<void>((resolve, reject) => {
      tunnel.once('error', reject);
      tunnel.end(data, () => resolve()); // ...our write side still works
    });
    await new Promise<void>((resolve) => (tunnel.closed ? resolve() : tunnel.once('close', () => resolve())));
    await session.close();
    const c = await py.connection();
    expect(c.requests[0]).toMatchObject({
      bytes_in: MiB,
      sha256_in: sha256(data),
      ended_remote: true,
      ended_local: true,
      reset_code: null,
    });
  });

  it('sends only :method and :authority as pseudo-headers, then baggage, forwarded, traceparent in order', async () => {
    const c = await afterOneEmptyTunnel({
      authority: '[fd00::2]:8080',
      baggage: {
        clusterName: 'east',
        namespace: 'payments',
        workloadKind: 'deployment',
        workloadName: 'cart',
      },
      forwarded: { for: '10.0.0.9:4321' },
    });
    const headers = c.requests[0]!.headers;
    expect(names(headers)).toEqual([':method', ':authority', 'baggage', 'forwarded', 'traceparent']);
    expect(headers[0]).toEqual([':method', 'CONNECT']);
    expect(headers[1]).toEqual([':authority', '[fd00::2]:8080']);
    expect(headers[2]).toEqual([
      'baggage',
      'k8s.cluster.name=east,k8s.namespace.name=payments,k8s.deployment.name=cart',
    ]);
    expect(headers[3]).toEqual(['forwarded', 'for="10.0.0.9:4321"']);
    expect(headers[4]![1]).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });

  it('puts x-forwarded-network last, after traceparent, when given (double HBONE inner CONNECT)', async () => {
    const c = await afterOneEmptyTunnel({
      authority: 'reviews.default.svc.cluster.local:9080',
      forwarded: { for: '10.0.0.9:4321', host: 'reviews.default.svc.cluster.local' },
      forwardedNetwork: 'network-west',
    });
    const headers = c.requests[0]!.headers;
    expect(names(headers)).toEqual([
      ':method',
      ':authority',
      'baggage',
      'forwarded',
      'traceparent',
      'x-forwarded-network',
    ]);
    expect(headers[1]).toEqual([':authority', 'reviews.default.svc.cluster.local:9080']);
    expect(headers[3]).toEqual(['forwarded', 'for="10.0.0.9:4321";host=reviews.default.svc.cluster.local']);
    expect(headers[5]).toEqual(['x-forwarded-network', 'network-west']);
  });

  it('always sends baggage (empty when there is nothing to say) and leaves forwarded out when not given', async () => {
    const headers = (await afterOneEmptyTunnel({ authority: '10.0.0.2:8080' })).requests[0]!.headers;
    expect(names(headers)).toEqual([':method', ':authority', 'baggage', 'traceparent']);
    expect(headers[2]).toEqual(['baggage', '']);
  });

  it("sends ztunnel's client SETTINGS and a WINDOW_UPDATE raising the connection window to 16 MiB", async () => {
    const { tap } = await afterOneEmptyTunnel({ authority: '10.0.0.2:8080' });
    expect(tap.preface_ok).toBe(true);
    expect(tap.frames[0]?.type).toBe('SETTINGS'); // right after the preface
    const settings = firstSettings(tap)!;
    expect(Object.fromEntries(settingsMap(settings))).toEqual({
      [ENABLE_PUSH]: 0,
      [INITIAL_WINDOW_SIZE]: 4 * MiB,
      [MAX_FRAME_SIZE]: MiB,
      [MAX_HEADER_LIST_SIZE]: 16 * 1024,
    });
    expect(settings.settings).toHaveLength(4);
    const connUpdates = tap.frames.filter((f) => f.type === 'WINDOW_UPDATE' && f.stream === 0);
    const firstHeaders = tap.frames.find((f) => f.type === 'HEADERS')!;
    expect(connUpdates[0]?.increment).toBe(CONNECTION_WINDOW_INCREMENT);
    expect(65_535 + connUpdates[0]!.increment!).toBe(16 * MiB);
    // Part of the connection preface: only SETTINGS (ours, or the ACK of theirs) before it.
    expect(framesBefore(tap, connUpdates[0]!).every((f) => f.type === 'SETTINGS')).toBe(true);
    expect(connUpdates[0]!.index).toBeLessThan(firstHeaders.index);
  });

  it.each([
    [401, ConnectDeniedError],
    [503, UpstreamUnavailableError],
    [421, ConnectRefusedError],
  ])('maps their %i answer to %O', async (status, cls) => {
    const py = await theirServer({ status });
    const session = await ourClient(py.port);
    const err = await session.open({ authority: '10.0.0.2:8080' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(cls);
    expect((err as ConnectRefusedError).status).toBe(status);
    expect(session.available).toBe(true); // a refused tunnel leaves the connection usable
    await session.close();
    const c = await py.connection();
    expect(c.requests[0]).toMatchObject({ status, bytes_in: 0 }); // no DATA before a 200
  });

  it('returns the destination baggage their 200 carries', async () => {
    const py = await theirServer({ responseBaggage: 'k8s.namespace.name=payments,k8s.pod.name=checkout' });
    const session = await ourClient(py.port);
    const tunnel = await session.open({ authority: '10.0.0.2:8080' });
    expect(tunnel.responseHeaders.baggage).toBe('k8s.namespace.name=payments,k8s.pod.name=checkout');
    tunnel.end();
    await readAll(tunnel);
  });

  it('refuses their server when it presents an identity we do not expect, before sending any HTTP/2', async () => {
    const py = await theirServer({ as: files.impostor });
    const err = await ourClient(py.port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityMismatchError);
    expect((err as Error).message).toContain(IMPOSTOR_ID);
    const c = await py.connection();
    // We close as soon as we see the certificate: their side sees the TLS session end (during or
    // right after its handshake), never an HTTP/2 preface.
    expect(c.tap.preface_ok).toBeNull();
    expect(c.tap.frame_count).toBe(0);
    expect(c.requests).toEqual([]);
    expect(c.error === 'tls-handshake' || c.eof === true).toBe(true);
  });

  it('fails with TlsHandshakeError against a server that accepts only ChaCha20-Poly1305', async () => {
    const py = await theirServer({ tls13Suites: ['TLS_CHACHA20_POLY1305_SHA256'] });
    const err = await ourClient(py.port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlsHandshakeError);
    const c = await py.connection();
    expect(c.error).toBe('tls-handshake');
    expect(c.detail).toMatch(/cipher|NO_SHARED_CIPHER/i);
  });

  it('negotiates AES-GCM with a server that accepts ChaCha20-Poly1305 first: we never offer it', async () => {
    const py = await theirServer({ tls13Suites: ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_256_GCM_SHA384'] });
    const session = await ourClient(py.port);
    expect(session.tls).toMatchObject({ protocol: 'TLSv1.3', alpn: 'h2', cipher: 'TLS_AES_256_GCM_SHA384' });
    await session.close();
    expect((await py.connection()).tls?.cipher).toBe('TLS_AES_256_GCM_SHA384');
  });

  it('reports a TLS failure when their server refuses our identity after the handshake', async () => {
    const py = await theirServer({ expectClientId: `spiffe://${TRUST_DOMAIN}/ns/default/sa/someone-else` });
    const err = await ourClient(py.port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlsHandshakeError);
    const c = await py.connection();
    expect(c.error).toBe('identity-mismatch');
    expect(c.peer_ids).toEqual([CLIENT_ID]);
  });
});
