/**
 * `hbone load` against `hbone serve`, both real processes: K concurrent tunnels on one
 * connection, every byte verified; and a service that corrupts the echo is caught.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { certArgs, killAll, makePki, runHbone, serve } from './cli-harness.js';

const SERVER_ID = 'spiffe://example.org/ns/default/sa/server';
const CLIENT_ID = 'spiffe://example.org/ns/default/sa/client';

let dir: string;
let pki: Awaited<ReturnType<typeof makePki>>;
const services: net.Server[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hbone-cli-load-'));
  pki = await makePki(dir, { server: SERVER_ID, client: CLIENT_ID });
}, 120_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(async () => {
  await killAll();
  for (const s of services.splice(0)) s.close();
});

interface Summary {
  ok: boolean;
  peer: string | null;
  streams: number;
  bytesPerStream: number;
  tunnels: { ok: number; failed: number };
  bytes: { sent: number; received: number; verified: number };
  seconds: number;
  mbPerSecond: number;
  handshakeMs: number | null;
  errors: Array<{ tunnel?: number; code: string; message: string }>;
}

function loadArgs(to: string, authority: string, streams: number, bytes: string): string[] {
  return [
    'load',
    '--to',
    to,
    '--authority',
    authority,
    ...certArgs(pki.files.client!),
    '--bundle',
    pki.bundle,
    '--expect',
    SERVER_ID,
    '--streams',
    String(streams),
    '--bytes',
    bytes,
    '--deadline',
    '60s',
  ];
}

/** A TCP service that answers every byte with that byte XOR 1: an echo that lies. */
async function corruptingEcho(): Promise<number> {
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => s.destroy());
    s.on('data', (d: Buffer) => s.write(Buffer.from(d.map((b) => b ^ 1))));
    s.on('end', () => s.end());
  });
  services.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as net.AddressInfo).port;
}

describe('hbone load', { timeout: 120_000 }, () => {
  it('10 concurrent tunnels of 64 KiB on one connection, every byte verified: one JSON summary, exit 0', async () => {
    const srv = await serve([...certArgs(pki.files.server!), '--bundle', pki.bundle, '--echo']);
    const r = await runHbone(loadArgs(srv.address, '127.0.0.1:9', 10, '64KiB'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdoutText.trim().split('\n');
    expect(lines).toHaveLength(1);
    const s = JSON.parse(lines[0]!) as Summary;
    expect(s).toMatchObject({
      ok: true,
      peer: SERVER_ID,
      streams: 10,
      bytesPerStream: 65536,
      tunnels: { ok: 10, failed: 0 },
      bytes: { sent: 655360, received: 655360, verified: 655360 },
      errors: [],
    });
    expect(s.seconds).toBeGreaterThan(0);
    expect(s.mbPerSecond).toBeGreaterThan(0);
    expect(s.handshakeMs).toBeGreaterThan(0);

    // One connection: the server logged ten CONNECTs, all from the same client port.
    const logged = (await srv.cli.until(() => {
      const l = srv.cli.stdoutText.split('\n').filter(Boolean);
      return l.length >= 10 ? srv.cli.jsonLines() : undefined;
    }, 'ten log lines')) as Array<{ remote: string; status: number; bytesIn: number; bytesOut: number }>;
    expect(new Set(logged.map((l) => l.remote)).size).toBe(1);
    for (const l of logged) expect(l).toMatchObject({ status: 200, bytesIn: 65536, bytesOut: 65536 });
  });

  it('an echo that changes the bytes fails every tunnel with ERR_LOAD_MISMATCH and exit 1', async () => {
    const liar = await corruptingEcho();
    const srv = await serve([...certArgs(pki.files.server!), '--bundle', pki.bundle, '--forward']);
    const r = await runHbone(loadArgs(srv.address, `127.0.0.1:${liar}`, 3, '10000'));
    expect(r.code).toBe(1);
    const s = JSON.parse(r.stdoutText) as Summary;
    expect(s.ok).toBe(false);
    expect(s.tunnels).toEqual({ ok: 0, failed: 3 });
    expect(s.bytes.verified).toBe(0);
    expect(s.errors.map((e) => e.code)).toEqual([
      'ERR_LOAD_MISMATCH',
      'ERR_LOAD_MISMATCH',
      'ERR_LOAD_MISMATCH',
    ]);
    expect(s.errors[0]!.message).toMatch(/differs from what was sent at byte 0/);
    expect(r.stderr).toMatch(/^hbone load: ERR_LOAD_MISMATCH: 3 of 3 tunnels failed/);
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('a server that cannot be reached: the summary says so, and exit 1', async () => {
    const s = net.createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const { port } = s.address() as net.AddressInfo;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    const r = await runHbone(loadArgs(`127.0.0.1:${port}`, '127.0.0.1:9', 2, '1k'));
    expect(r.code).toBe(1);
    const summary = JSON.parse(r.stdoutText) as Summary;
    expect(summary).toMatchObject({ ok: false, tunnels: { ok: 0, failed: 2 } });
    expect(summary.errors[0]!.code).toBe('ERR_HBONE_CONNECT');
    expect(r.stderr).toMatch(/^hbone load: ERR_HBONE_CONNECT: .*ECONNREFUSED/);
  });
});
