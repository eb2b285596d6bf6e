/**
 * A peer that stops reading. Whatever we write into its tunnel must be backpressured
 * (`write()` returns false and 'drain' waits) within the flow-control windows, never buffered
 * without bound: on the server (a client that grants no window, or grants a huge one and stops
 * reading the socket) and on the client (a hostile server that does the same).
 */
import {
  collectGarbage,
  encodeHeaderBlock,
  FrameFlag,
  headersFrame,
  memoryWatch,
  type RawH2Peer,
  reportAttack,
  SettingId,
  windowUpdateFrame,
} from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type HboneServerOptions,
  type HboneTunnel,
  INITIAL_STREAM_WINDOW_BYTES,
  MAX_WRITE_BUFFER_BYTES,
  SessionClosedError,
} from '../src/index.js';
import { settle } from './fixtures.js';
import { echo, Harness, onConnect, SERVER_ID } from './harness.js';

const h = new Harness();
beforeAll(async () => {
  await h.init();
  collectGarbage();
});
afterEach(() => h.cleanup());

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x62);

/**
 * Writes into `tunnel` as fast as it accepts: on until `write()` returns false, then again on
 * 'drain'; stops at `cap` bytes or when the tunnel fails. Returns live counters.
 */
function pump(tunnel: HboneTunnel, cap = 512 * MiB) {
  const state = { accepted: 0, firstFalseAt: -1, stalls: 0, error: undefined as unknown, stopped: false };
  const go = (): void => {
    while (!state.stopped && state.accepted < cap) {
      state.accepted += CHUNK.length;
      if (!tunnel.write(CHUNK)) {
        if (state.firstFalseAt < 0) state.firstFalseAt = state.accepted;
        state.stalls++;
        tunnel.once('drain', go);
        return;
      }
    }
  };
  tunnel.on('error', (err) => {
    state.error = err;
    state.stopped = true;
  });
  tunnel.on('close', () => {
    state.stopped = true;
  });
  go();
  return state;
}

/** A server whose tunnels to 10.0.0.9 are pumped full; other tunnels echo. */
async function pumpingServer(extra: Partial<HboneServerOptions> = {}) {
  const pumps: Array<ReturnType<typeof pump>> = [];
  const { srv, port } = await h.server_((t) => {
    if (t.authority.host === '10.0.0.9') {
      pumps.push(pump(t.accept()));
      return;
    }
    echo(t);
  }, extra);
  return { srv, port, pumps };
}

describe('the server writing to a client that stops reading', () => {
  it('a client that never grants window: write() turns false within the 64 KiB window + buffers', async () => {
    const { port, pumps } = await pumpingServer();
    const mem = memoryWatch();
    const c = await h.rawClient(port, {
      autoWindowUpdate: false, // reads the socket, returns no window: RFC default 65,535 bytes
    });
    const id = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    await expect.poll(() => pumps.length).toBe(1);
    const accepted = await settle(() => pumps[0]!.accepted);
    const growth = mem();
    reportAttack('client grants no window', {
      acceptedBytes: accepted,
      firstFalseAt: pumps[0]!.firstFalseAt,
      deliveredBytes: c.dataBytesOf(id),
      ...growth,
    });
    expect(pumps[0]!.firstFalseAt).toBeGreaterThan(0);
    expect(c.dataBytesOf(id)).toBe(65_535);
    expect(accepted).toBeLessThanOrEqual(65_535 + 256 * 1024);
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(16);
    await h.expectStillServes(port);
  });

  it("a client that takes HBONE's windows (4 MiB stream, 16 MiB connection) and stops reading the socket", async () => {
    const { port, pumps } = await pumpingServer();
    const c = await h.rawClient(port, {
      settings: [[SettingId.INITIAL_WINDOW_SIZE, INITIAL_STREAM_WINDOW_BYTES]],
      autoWindowUpdate: false,
    });
    c.send(windowUpdateFrame(0, 16 * MiB - 65_535));
    const id = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    c.pause();
    await expect.poll(() => pumps.length).toBe(1);
    const mem = memoryWatch();
    const accepted = await settle(() => pumps[0]!.accepted);
    const growth = mem();
    reportAttack('client takes 4 MiB / 16 MiB and stops reading', { acceptedBytes: accepted, ...growth });
    expect(pumps[0]!.firstFalseAt).toBeGreaterThan(0);
    expect(accepted).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW_BYTES + 256 * 1024);
    expect(c.isClosed).toBe(false);
    await h.expectStillServes(port);
  });

  it.each([
    ['the default server', {}, true],
    ["node's socket path", { bufferWrites: false }, false],
  ])('a client that grants 2 GiB of window and stops reading the socket: %s', async (name, extra, buffered) => {
    const { srv, port, pumps } = await pumpingServer(extra);
    const c = await h.rawClient(port, {
      settings: [[SettingId.INITIAL_WINDOW_SIZE, 0x7fffffff]],
      autoWindowUpdate: false,
    });
    c.send(windowUpdateFrame(0, 0x7fffffff - 65_535));
    const id = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    c.pause();
    await expect.poll(() => pumps.length).toBe(1);
    const mem = memoryWatch();
    const accepted = await settle(() => pumps[0]!.accepted, { quietMs: 500, maxMs: 10_000 });
    const growth = mem();
    const p = pumps[0]!;
    reportAttack(`client grants 2 GiB and stops reading (${name})`, {
      acceptedBytes: accepted,
      tunnelError: p.error === undefined ? undefined : String(p.error),
      connections: srv.connections,
      ...growth,
    });
    if (buffered) {
      // Flow control no longer bounds anything: the write-buffered socket queues up to
      // MAX_WRITE_BUFFER_BYTES for the peer, then drops the connection.
      expect(accepted).toBeLessThanOrEqual(MAX_WRITE_BUFFER_BYTES + 16 * MiB);
      expect(p.error).toBeInstanceOf(SessionClosedError);
      await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    } else {
      // node stops at the TCP socket's buffers: write() turns false and the tunnel waits.
      expect(p.firstFalseAt).toBeGreaterThan(0);
      expect(accepted).toBeLessThanOrEqual(16 * MiB);
      expect(p.error).toBeUndefined();
    }
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(64);
    await h.expectStillServes(port);
  });
});

describe('our client writing to a server that stops reading', () => {
  /** A hostile server that answers every CONNECT with 200 and then never reads or grants window. */
  async function stallingServer(
    settings: ReadonlyArray<readonly [number, number]>,
    pause: boolean,
    connectionWindowIncrement = 0,
  ) {
    const peers: RawH2Peer[] = [];
    const answer = onConnect((peer, id) => {
      peer.send(headersFrame(id, encodeHeaderBlock([[':status', '200']])));
      if (pause) peer.pause();
    });
    const port = await h.hostileServer(
      (peer) => {
        peers.push(peer);
        if (connectionWindowIncrement > 0) peer.send(windowUpdateFrame(0, connectionWindowIncrement));
        answer(peer);
      },
      { settings, autoWindowUpdate: false },
    );
    return { port, peers };
  }

  it('a server that grants no window: the tunnel backpressures after its 65,535 bytes', async () => {
    const { port, peers } = await stallingServer([], false);
    const session = await h.connect(port, { expectedIdentities: [SERVER_ID], pingIntervalMs: 0 });
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    const mem = memoryWatch();
    const p = pump(tunnel);
    const accepted = await settle(() => p.accepted);
    const growth = mem();
    reportAttack('our client, server grants no window', { acceptedBytes: accepted, ...growth });
    expect(p.firstFalseAt).toBeGreaterThan(0);
    expect(accepted).toBeLessThanOrEqual(65_535 + 256 * 1024);
    expect(peers[0]!.dataBytesOf(tunnel.streamId)).toBe(65_535);
    tunnel.destroy();
  });

  it('a server that grants 2 GiB and stops reading the socket: backpressure at the TCP buffers', async () => {
    const { port } = await stallingServer(
      [[SettingId.INITIAL_WINDOW_SIZE, 0x7fffffff]],
      true,
      0x7fffffff - 65_535,
    );
    const session = await h.connect(port, { expectedIdentities: [SERVER_ID], pingIntervalMs: 0 });
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    const mem = memoryWatch();
    const p = pump(tunnel);
    const accepted = await settle(() => p.accepted, { quietMs: 500, maxMs: 10_000 });
    const growth = mem();
    reportAttack('our client, server grants 2 GiB and stops reading', { acceptedBytes: accepted, ...growth });
    expect(p.firstFalseAt).toBeGreaterThan(0);
    expect(accepted).toBeGreaterThan(MiB); // past any window: the TCP buffers are what stops it
    expect(accepted).toBeLessThanOrEqual(16 * MiB);
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(64);
    tunnel.destroy();
  });
});

describe('a tunnel whose reader comes back', () => {
  it('after a stall, the writer resumes and every byte arrives in order', async () => {
    const total = 8 * MiB;
    const payload = Buffer.alloc(total);
    for (let i = 0; i < total; i += 4) payload.writeUInt32BE(i / 4, i);
    const { port } = await h.server_((t) => {
      const tunnel = t.accept();
      tunnel.on('error', () => {});
      tunnel.end(payload);
    });
    const c = await h.rawClient(port, {
      autoWindowUpdate: false,
      maxDataPerStream: 16 * MiB,
    });
    const id = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    await settle(() => c.dataBytesOf(id));
    expect(c.dataBytesOf(id)).toBe(65_535);
    // Grant the rest in one go, as a reader that caught up would.
    c.send(windowUpdateFrame(0, total), windowUpdateFrame(id, total));
    await c.waitFor((f) => f.streamId === id && (f.flags & FrameFlag.END_STREAM) !== 0, 10_000, 'END_STREAM');
    expect(c.dataOf(id).equals(payload)).toBe(true);
  });
});
