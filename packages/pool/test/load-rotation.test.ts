/**
 * Certificate rotation under load: the client's and the server's SVIDs are replaced every
 * ~300 ms (fresh mints from the test CA into MemorySources) while workers keep pooled tunnels
 * busy for 4 s. No tunnel may fail; every client rotation moves new tunnels to a new connection
 * (the pool key carries the credentials' generation) that presents the new client certificate,
 * and every new connection presents the server certificate current when it was accepted. Old
 * connections drain and close. Serials are read on the server's side of each connection: the
 * client's leaf as the server received it, and the leaf the server sent in that handshake.
 */
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { createServer, type HboneTunnel, type ServerConnectionInfo } from '@hbone/hbone';
import { type MemorySource, X509Svid } from '@hbone/spiffe';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createPool } from '../src/index.js';
import { CLIENT_ID, ca, echo, keyFor, serverId, sourceFor } from './fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
let data: Buffer;
beforeAll(() => {
  data = randomBytes(4 * 1024 * 1024);
});

/** Mints a fresh SVID for `id`; returns it with its serial (hex, as node prints serials). */
async function mint(id: string): Promise<{ svid: X509Svid; serial: string }> {
  const m = await (await ca()).mint(id);
  return {
    svid: X509Svid.parse(m.certChainPem, m.keyPem),
    serial: new X509Certificate(m.leafDer).serialNumber,
  };
}

function serialOf(source: MemorySource): string {
  return new X509Certificate(source.getX509Svid().leaf.der).serialNumber;
}

/**
 * The TLS socket under a server-side HTTP/2 session: node's proxy of the session's socket, then
 * node's JSStreamSocket (`stream`) around the server's WriteBufferedSocket (`inner`).
 */
function tlsSocketOf(info: ServerConnectionInfo): TLSSocket {
  let s = info.session.socket as unknown as Partial<TLSSocket> & { inner?: unknown; stream?: unknown };
  for (let i = 0; i < 4 && typeof s.getPeerCertificate !== 'function'; i++) {
    s = (s.inner ?? s.stream) as typeof s;
  }
  if (typeof s?.getPeerCertificate !== 'function') throw new Error('no TLS socket under this session');
  return s as TLSSocket;
}

/** Echoes `body` through a tunnel and checks it by sha256. */
async function echoChecked(tunnel: HboneTunnel, body: Buffer): Promise<void> {
  const hash = createHash('sha256');
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    tunnel.on('data', (c: Buffer) => {
      hash.update(c);
      n += c.length;
    });
    tunnel.once('end', resolve);
    tunnel.once('error', reject);
  });
  tunnel.end(body);
  await done;
  if (n !== body.length || !hash.digest().equals(createHash('sha256').update(body).digest())) {
    throw new Error(`echo mismatch: ${n} of ${body.length} bytes`);
  }
}

describe('certificate rotation under load', () => {
  it('rotating both SVIDs every ~300 ms for 4 s fails no tunnel; new connections present the new certificates', async () => {
    const serverSource = await sourceFor(serverId(40));
    const clientSource = await sourceFor(CLIENT_ID);
    const srv = createServer({ svidSource: serverSource, bundleSource: serverSource, handler: echo });
    const { port } = await srv.listen(0, '127.0.0.1');
    cleanups.push(() => srv.destroy());

    // What each connection presented, read on the server's side of it.
    const connections: Array<{
      client: string;
      server: string;
      currentServer: string;
      previousServer: string;
    }> = [];
    const serverSerials = [serialOf(serverSource)];
    srv.on('connection', (info: ServerConnectionInfo) => {
      const socket = tlsSocketOf(info);
      connections.push({
        client: socket.getPeerCertificate().serialNumber,
        server: (socket.getCertificate() as { serialNumber?: string } | null)?.serialNumber ?? 'none',
        currentServer: serverSerials[serverSerials.length - 1]!,
        previousServer: serverSerials[serverSerials.length - 2] ?? '',
      });
    });

    const pool = createPool({
      credentials: () => ({ svidSource: clientSource, bundleSource: clientSource }),
    });
    cleanups.push(() => pool.destroy());
    const key = keyFor({ port, id: serverId(40) });

    const clientSerials = [serialOf(clientSource)];
    const failures: unknown[] = [];
    let ok = 0;
    let stop = false;
    const worker = async (w: number): Promise<void> => {
      let i = 0;
      while (!stop) {
        const size = 1 + ((w * 7919 + i++ * 104_729) % (256 * 1024));
        const off = (w * 65_537 + i * 4_099) % (data.length - size);
        try {
          await echoChecked(
            await pool.open(key, { authority: '10.0.0.1:80' }),
            data.subarray(off, off + size),
          );
          ok++;
        } catch (err) {
          failures.push(err);
        }
      }
    };
    const workers = Array.from({ length: 16 }, (_, w) => worker(w));

    // Rotate: the server every 300 ms, the client 150 ms after each server rotation.
    const started = Date.now();
    let rotations = 0;
    while (Date.now() - started < 4_000) {
      await new Promise((r) => setTimeout(r, 150));
      const s = await mint(serverId(40));
      serverSerials.push(s.serial);
      serverSource.setX509Svid(s.svid);
      await new Promise((r) => setTimeout(r, 150));
      const c = await mint(CLIENT_ID);
      clientSerials.push(c.serial);
      clientSource.setX509Svid(c.svid);
      rotations++;
    }
    await new Promise((r) => setTimeout(r, 300)); // traffic on the last credentials
    stop = true;
    await Promise.all(workers);

    if (process.env.LOAD_REPORT) {
      const facts = {
        tunnels: ok,
        failed: failures.length,
        rotations,
        connections: connections.length,
        clientSerialsPresented: new Set(connections.map((c) => c.client)).size,
        serverSerialsPresented: new Set(connections.map((c) => c.server)).size,
        rotationEvictions: pool.stats().evictions.rotation,
      };
      process.stdout.write(`[load] rotation: ${JSON.stringify(facts)}\n`);
    }
    expect(failures).toEqual([]);
    expect(ok).toBeGreaterThan(rotations * 5);
    expect(rotations).toBeGreaterThanOrEqual(10);

    // Every client certificate, the rotated ones included, was presented on some connection, and
    // no connection presented anything else.
    const presentedClient = new Set(connections.map((c) => c.client));
    for (const serial of clientSerials) expect(presentedClient).toContain(serial);
    for (const serial of presentedClient) expect(clientSerials).toContain(serial);
    // Each connection presented the server certificate current when it was accepted (or the one
    // before it, for a handshake that began just before a rotation).
    for (const c of connections) expect([c.currentServer, c.previousServer]).toContain(c.server);
    expect(new Set(connections.map((c) => c.server)).size).toBeGreaterThanOrEqual(rotations - 1);

    // Old generations drained: by now only the newest connection is left (or one more, still
    // finishing), and each client rotation evicted the previous one.
    expect(pool.stats().evictions.rotation).toBeGreaterThanOrEqual(rotations - 1);
    const deadline = Date.now() + 3_000;
    while (pool.stats().connections > 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(pool.stats().connections).toBe(1);
  });
});
