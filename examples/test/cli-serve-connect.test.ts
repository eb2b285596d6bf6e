/**
 * `hbone serve` and `hbone connect` as real processes on 127.0.0.1: bytes round trip through
 * echo and forward servers (verified by hash), the per-CONNECT JSON log, identity checks on both
 * sides, and the graceful drain on SIGTERM.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { certArgs, hbone, killAll, makePki, runHbone, serve, sha256 } from './cli-harness.js';

const SERVER_ID = 'spiffe://example.org/ns/default/sa/server';
const CLIENT_ID = 'spiffe://example.org/ns/default/sa/client';
const OTHER_ID = 'spiffe://example.org/ns/default/sa/other';

let dir: string;
let pki: Awaited<ReturnType<typeof makePki>>;
const servers: net.Server[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hbone-cli-sc-'));
  pki = await makePki(dir, { server: SERVER_ID, client: CLIENT_ID, other: OTHER_ID });
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await killAll();
  for (const s of servers.splice(0)) s.close();
});

const SLOW = { timeout: 120_000 };

function serverArgs(): string[] {
  return [...certArgs(pki.files.server!), '--bundle', pki.bundle];
}

function clientArgs(to: string, authority: string, who: 'client' | 'other' = 'client'): string[] {
  return [
    'connect',
    '--to',
    to,
    '--authority',
    authority,
    ...certArgs(pki.files[who]!),
    '--bundle',
    pki.bundle,
  ];
}

/** A TCP echo service in this process, with half-close. */
async function tcpEcho(): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

/** A port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface LogLine {
  peer: string;
  authority: string;
  headers: Record<string, string>;
  status: number;
  bytesIn: number;
  bytesOut: number;
  remote: string;
}

describe('hbone serve --echo + hbone connect', SLOW, () => {
  it('stdin goes through the tunnel and comes back on stdout, byte for byte; the server logs one JSON line', async () => {
    const srv = await serve([...serverArgs(), '--echo']);
    const input = randomBytes(256 * 1024);
    const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const r = await runHbone(
      [
        ...clientArgs(srv.address, '10.0.0.1:8080'),
        '--expect',
        SERVER_ID,
        '--header',
        'baggage=k8s.namespace.name=default,k8s.deployment.name=client',
        '--header',
        `traceparent=${traceparent}`,
      ],
      { stdin: input },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(input.length);
    expect(sha256(r.stdout)).toBe(sha256(input));

    const [line] = (await srv.cli.until(
      () => (srv.cli.stdoutText.includes('\n') ? srv.cli.jsonLines() : undefined),
      'the log line',
    )) as LogLine[];
    expect(line).toMatchObject({
      peer: CLIENT_ID,
      authority: '10.0.0.1:8080',
      status: 200,
      bytesIn: input.length,
      bytesOut: input.length,
      headers: { baggage: 'k8s.namespace.name=default,k8s.deployment.name=client', traceparent },
    });
    expect(Object.keys(line!.headers)).toEqual(['baggage', 'traceparent']);
    expect(line!.remote).toMatch(/^127\.0\.0\.1:\d+$/);

    // SIGTERM: graceful drain, exit 0.
    srv.cli.child.kill('SIGTERM');
    const exit = await srv.cli.exit(30_000);
    expect(exit.code).toBe(0);
    expect(srv.cli.stderr).toMatch(/SIGTERM: draining/);
    expect(srv.cli.stderr).toMatch(/hbone serve: closed/);
  });

  it('an empty stdin is a clean half-close: the server sees END_STREAM and the client exits 0 with no output', async () => {
    const srv = await serve([...serverArgs(), '--echo']);
    const r = await runHbone([...clientArgs(srv.address, '127.0.0.1:9'), '--expect', SERVER_ID], {
      stdin: '',
    });
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(0);
    const [line] = (await srv.cli.until(
      () => (srv.cli.stdoutText.includes('\n') ? srv.cli.jsonLines() : undefined),
      'the log line',
    )) as LogLine[];
    expect(line).toMatchObject({ status: 200, bytesIn: 0, bytesOut: 0 });
  });

  it('a server that is not the expected identity: ERR_HBONE_IDENTITY_MISMATCH on one stderr line, non-zero exit', async () => {
    const srv = await serve([...serverArgs(), '--echo']);
    const r = await runHbone(
      [
        ...clientArgs(srv.address, '127.0.0.1:9'),
        '--expect',
        'spiffe://example.org/ns/default/sa/someone-else',
      ],
      { stdin: 'hello' },
    );
    expect(r.code).not.toBe(0);
    expect(r.stdout.length).toBe(0);
    const lines = r.stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^hbone connect: ERR_HBONE_IDENTITY_MISMATCH: .*sa\/server/);
  });

  it('--allow: a client not listed is refused at the handshake; a listed one gets through', async () => {
    const srv = await serve([...serverArgs(), '--echo', '--allow', OTHER_ID]);
    const refused = await runHbone([...clientArgs(srv.address, '127.0.0.1:9'), '--expect', SERVER_ID], {
      stdin: 'hello',
    });
    expect(refused.code).not.toBe(0);
    expect(refused.stdout.length).toBe(0);
    expect(refused.stderr.trimEnd().split('\n')).toHaveLength(1);
    // The server drops the connection right after TLS 1.3 (it checks our certificate after our
    // Finished). @hbone/hbone reports that as ERR_HBONE_TLS when it sees a FIN, but as
    // ERR_HBONE_H2_HANDSHAKE when the server's kernel answers our unread preface with a RST,
    // which is what happens between two processes (reported to the hbone package owners).
    expect(refused.stderr).toMatch(/^hbone connect: ERR_HBONE_(TLS|H2_HANDSHAKE): /);
    await srv.cli.until(
      () => /ERR_HBONE_TLS: client identity rejected: .*sa\/client/.test(srv.cli.stderr),
      'the rejection',
    );

    // The positive control, same server, same bundle.
    const allowed = await runHbone(
      [...clientArgs(srv.address, '127.0.0.1:9', 'other'), '--expect', SERVER_ID],
      {
        stdin: 'hello',
      },
    );
    expect(allowed.stderr).toBe('');
    expect(allowed.code).toBe(0);
    expect(allowed.stdoutText).toBe('hello');
    const lines = (await srv.cli.until(
      () => (srv.cli.stdoutText.includes('\n') ? srv.cli.jsonLines() : undefined),
      'the log line',
    )) as LogLine[];
    expect(lines).toHaveLength(1);
    expect(lines[0]!.peer).toBe(OTHER_ID);
  });

  it('rejects headers the hbone client cannot send, and bad header values, before dialling', async () => {
    const [other, badBaggage] = await Promise.all([
      runHbone([
        ...clientArgs('127.0.0.1:1', '127.0.0.1:9'),
        '--expect',
        SERVER_ID,
        '--header',
        'x-user=bob',
      ]),
      runHbone([
        ...clientArgs('127.0.0.1:1', '127.0.0.1:9'),
        '--expect',
        SERVER_ID,
        '--header',
        'baggage=a=é',
      ]),
    ]);
    expect(other.code).toBe(2);
    expect(other.stderr).toMatch(
      /^hbone connect: ERR_USAGE: --header x-user: the hbone client sends only baggage, forwarded, traceparent, x-forwarded-network/,
    );
    expect(badBaggage.code).toBe(1);
    expect(badBaggage.stderr).toMatch(/^hbone connect: ERR_INVALID_BAGGAGE: --header baggage: /);
  });
});

describe('hbone serve --forward', SLOW, () => {
  it('forwards each tunnel to its :authority over TCP; an unreachable target is a 503', async () => {
    const echoPort = await tcpEcho();
    const dead = await closedPort();
    const srv = await serve([...serverArgs(), '--forward']);
    const input = randomBytes(300_000);
    const [ok, unreachable] = await Promise.all([
      runHbone([...clientArgs(srv.address, `127.0.0.1:${echoPort}`), '--expect', SERVER_ID], {
        stdin: input,
      }),
      runHbone([...clientArgs(srv.address, `127.0.0.1:${dead}`), '--expect', SERVER_ID], { stdin: 'x' }),
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(sha256(ok.stdout)).toBe(sha256(input));

    expect(unreachable.code).not.toBe(0);
    expect(unreachable.stderr).toMatch(/^hbone connect: ERR_HBONE_UPSTREAM_UNAVAILABLE: .*503/);

    const lines = (await srv.cli.until(() => {
      const l = srv.cli.stdoutText.split('\n').filter(Boolean);
      return l.length >= 2 ? srv.cli.jsonLines() : undefined;
    }, 'two log lines')) as LogLine[];
    const byAuthority = new Map(lines.map((l) => [l.authority, l]));
    expect(byAuthority.get(`127.0.0.1:${echoPort}`)).toMatchObject({
      status: 200,
      peer: CLIENT_ID,
      bytesIn: input.length,
      bytesOut: input.length,
    });
    expect(byAuthority.get(`127.0.0.1:${dead}`)).toMatchObject({ status: 503, bytesIn: 0, bytesOut: 0 });
  });

  it('SIGINT drains: a tunnel still open when the signal comes finishes its bytes, then the server exits 0', async () => {
    const echoPort = await tcpEcho();
    const srv = await serve([...serverArgs(), '--forward', '--drain', '10s']);
    // A connect whose stdin we hold open: the tunnel is live when the server gets SIGINT.
    const client = hbone([...clientArgs(srv.address, `127.0.0.1:${echoPort}`), '--expect', SERVER_ID]);
    client.child.stdin!.write('first ');
    await client.until(() => client.stdoutText === 'first ' || undefined, 'the first echo');
    srv.cli.child.kill('SIGINT');
    await srv.cli.until(() => /SIGINT: draining/.test(srv.cli.stderr), 'the drain');
    client.child.stdin!.end('second');
    const c = await client.exit(30_000);
    expect(client.stderr).toBe('');
    expect(c.code).toBe(0);
    expect(client.stdoutText).toBe('first second');
    const s = await srv.cli.exit(30_000);
    expect(s.code).toBe(0);
    const [line] = srv.cli.jsonLines() as LogLine[];
    expect(line).toMatchObject({ status: 200, bytesIn: 12, bytesOut: 12 });
  });
});
