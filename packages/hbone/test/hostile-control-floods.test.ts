/**
 * Floods of frames that cost the peer nothing and make the server answer or remember something:
 * PING and SETTINGS (each wants an ACK: CVE-2019-9512, -9515), PRIORITY (CVE-2019-9513), empty
 * DATA frames (CVE-2019-9518), WINDOW_UPDATE. The server may answer them, but what it holds for
 * one peer must stay bounded, and a peer that makes it queue answers without reading them must
 * lose its connection.
 *
 * node's own guard: nghttp2 refuses to queue more than 1,000 ACKs (its outbound flood limit), and
 * node closes the connection. That guard only sees frames queued inside nghttp2: with the server's
 * default write-buffered socket (write-buffered-socket.ts) every write completes at once, so the
 * ACKs pile up in the TLS socket's buffer instead, one buffer per frame, up to
 * MAX_WRITE_BUFFER_BYTES (32 MiB) of ACK bytes: measured at ~200 bytes of heap per 17-byte ACK.
 */
import {
  collectGarbage,
  dataFrame,
  FrameFlag,
  FrameType,
  memoryWatch,
  pingFrame,
  priorityFrame,
  type RawH2Client,
  reportAttack,
  SettingId,
  settingsFrame,
  windowUpdateFrame,
} from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type HboneServerOptions, MAX_WRITE_BUFFER_BYTES } from '../src/index.js';
import { echo, Harness } from './harness.js';

const MiB = 1024 * 1024;

const h = new Harness();
beforeAll(async () => {
  await h.init();
  collectGarbage();
});
afterEach(() => h.cleanup());

/**
 * Sends `total` frames made by `frame(i)`, 1,000 per write, waiting for the socket to drain so
 * the attacker's own buffers stay small. Stops early when the server closes the connection.
 */
async function flood(c: RawH2Client, total: number, frame: (i: number) => Buffer): Promise<number> {
  let sent = 0;
  while (sent < total && !c.isClosed) {
    const batch: Buffer[] = [];
    for (let i = 0; i < 1_000; i++) batch.push(frame(sent + i));
    sent += batch.length;
    if (!c.send(...batch)) await c.drained(5_000).catch(() => {});
    else await new Promise((r) => setImmediate(r));
  }
  return sent;
}

describe('PING and SETTINGS floods from a peer that never reads the ACKs', () => {
  const native: Partial<HboneServerOptions> = { bufferWrites: false };

  it('node socket path: PING flood -> the connection is closed after ~1,000 unsent ACKs', async () => {
    const { srv, port } = await h.server_(echo, native);
    const c = await h.attacker(port);
    c.pause();
    const mem = memoryWatch();
    const sent = await flood(c, 200_000, (i) => pingFrame(BigInt(i)));
    const closed = await c.waitForClose(5_000);
    const growth = mem();
    reportAttack('PING flood, not reading (node socket path)', {
      sent,
      closedAfterMs: closed?.afterMs,
      ...growth,
    });
    expect(closed?.byPeer).toBe(true);
    expect(sent).toBeLessThan(200_000);
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(16);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  it('node socket path: SETTINGS flood -> the connection is closed', async () => {
    const { srv, port } = await h.server_(echo, native);
    const c = await h.attacker(port);
    c.pause();
    const sent = await flood(c, 200_000, (i) =>
      settingsFrame([[SettingId.INITIAL_WINDOW_SIZE, 65_535 + (i % 7)]]),
    );
    const closed = await c.waitForClose(5_000);
    reportAttack('SETTINGS flood, not reading (node socket path)', { sent, closedAfterMs: closed?.afterMs });
    expect(closed?.byPeer).toBe(true);
    expect(sent).toBeLessThan(200_000);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  // Once a bug (write-buffered socket, e6b9a3d): every ACK became its own small Buffer in the
  // TLS socket's write queue (~200 bytes of heap per 17-byte ACK; 1,000,000 PINGs held ~150 MiB
  // before MAX_WRITE_BUFFER_BYTES, counted in bytes, tripped). _writev now coalesces each batch.
  it('default server: PING flood -> memory stays within the bytes of the ACKs', async () => {
    const { port } = await h.server_(echo);
    const c = await h.attacker(port);
    c.pause();
    const mem = memoryWatch();
    const sent = await flood(c, 1_000_000, (i) => pingFrame(BigInt(i)));
    await new Promise((r) => setTimeout(r, 200));
    const growth = mem();
    reportAttack('PING flood, not reading (default write-buffered socket)', {
      sent,
      closed: c.isClosed,
      ...growth,
    });
    // 1,000,000 ACKs are 16.2 MiB on the wire. Node 20 and 22 hold ~14 MiB for them; Node 24
    // ~36 MiB (its TLS write path keeps more per queued byte). What bounds both is
    // MAX_WRITE_BUFFER_BYTES (32 MiB of queued bytes, then the connection is dropped) and that
    // overhead; the old bug held ~150 MiB.
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(MAX_WRITE_BUFFER_BYTES / MiB + 16);
    await h.expectStillServes(port);
  });
});

describe('floods the server answers or ignores, from a peer that reads', () => {
  it('PING flood while reading: every PING answered, a good client served meanwhile, memory bounded', async () => {
    const { port } = await h.server_(echo);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    const started = Date.now();
    const flooding = flood(c, 200_000, (i) => pingFrame(BigInt(i)));
    const goodMs = await h.expectStillServes(port);
    const sent = await flooding;
    await c
      .waitFor((f) => f.type === FrameType.PING && f.payload.readBigUInt64BE(0) === BigInt(sent - 1), 10_000)
      .catch(() => undefined);
    const growth = mem();
    reportAttack('PING flood, reading', {
      sent,
      acks: c.count(FrameType.PING),
      ms: Date.now() - started,
      goodClientMs: goodMs,
      closed: c.isClosed,
      ...growth,
    });
    expect(goodMs).toBeLessThan(5_000);
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(32);
  });

  it('PRIORITY flood on 100,000 fresh stream ids: ignored, bounded, the connection still carries a tunnel', async () => {
    const { port } = await h.server_(echo);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    const started = Date.now();
    const sent = await flood(c, 100_000, (i) => priorityFrame(2 * i + 101, 2 * i + 99));
    const id = c.connectRequest('10.0.0.1:80'); // stream 1: below the PRIORITY ids, still idle
    const outcome = await c.outcome(id, 10_000);
    const growth = mem();
    reportAttack('PRIORITY flood', { sent, ms: Date.now() - started, outcome: outcome.kind, ...growth });
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(32);
    await h.expectStillServes(port);
  });

  it('100,000 empty DATA frames on an open tunnel (CVE-2019-9518): the connection is closed', async () => {
    const { srv, port } = await h.server_(echo);
    const c = await h.attacker(port);
    const id = c.connectRequest('10.0.0.1:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    const sent = await flood(c, 100_000, () => dataFrame(id, Buffer.alloc(0)));
    const closed = await c.waitForClose(5_000);
    reportAttack('empty DATA flood', { sent, goaway: closed?.goaway, closedAfterMs: closed?.afterMs });
    expect(closed?.byPeer).toBe(true);
    expect(closed?.goaway?.errorCode).toBeGreaterThan(0);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  it('100,000 WINDOW_UPDATEs of 1 byte (no overflow): harmless, the tunnel still echoes', async () => {
    const { port } = await h.server_(echo);
    const c = await h.attacker(port);
    const id = c.connectRequest('10.0.0.1:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    const mem = memoryWatch();
    await flood(c, 100_000, (i) => windowUpdateFrame(i % 2 === 0 ? 0 : id, 1));
    c.data(id, 'echo me', true);
    await c.waitFor(
      (f) => f.streamId === id && f.type === FrameType.DATA && (f.flags & FrameFlag.END_STREAM) !== 0,
    );
    expect(c.dataOf(id).toString()).toBe('echo me');
    expect(mem().heapUsedMiB).toBeLessThan(32);
  });
});
