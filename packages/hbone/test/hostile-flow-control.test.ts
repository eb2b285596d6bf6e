/**
 * Flow control from a peer that does not play by it (RFC 9113 6.9): a WINDOW_UPDATE that pushes a
 * window past 2^31-1 or increments by zero, and DATA beyond the window the server granted. The
 * server must answer with FLOW_CONTROL_ERROR / PROTOCOL_ERROR, and what it buffers for a tunnel
 * nobody reads must stay within that tunnel's window.
 */
import {
  ErrorCode,
  FrameFlag,
  FrameType,
  memoryWatch,
  parseSettings,
  type RawH2Client,
  reportAttack,
  SettingId,
  windowUpdateFrame,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  CLAMPED_STREAM_WINDOW_BYTES,
  type HboneTunnel,
  INBOUND_BUDGET_BYTES,
  INBOUND_HARD_LIMIT_FACTOR,
  INITIAL_STREAM_WINDOW_BYTES,
  SessionClosedError,
  type TunnelHandler,
} from '../src/index.js';
import { echo, useHarness } from './harness.js';

const h = useHarness();

const LIVENESS = { pingIntervalMs: 100, pingTimeoutMs: 200 };

/** The harness attacker, with large frames so a window's worth of DATA is a few hundred frames. */
const attacker = (port: number): Promise<RawH2Client> =>
  h.attacker(port, { settings: [[SettingId.MAX_FRAME_SIZE, 1024 * 1024]] });

/** Accepts tunnels to 10.0.0.9 and never reads them (an application that stalls); echoes others. */
function stalledServer(): { handler: TunnelHandler; tunnels: HboneTunnel[]; buffered: () => number } {
  const tunnels: HboneTunnel[] = [];
  return {
    tunnels,
    buffered: () => tunnels.reduce((n, t) => n + t.readableLength + t.stream.readableLength, 0),
    handler: (t) => {
      if (t.authority.host !== '10.0.0.9') return echo(t);
      const tunnel = t.accept();
      tunnel.on('error', () => {});
      tunnel.pause();
      tunnels.push(tunnel);
    },
  };
}

/** DATA frames of 1 MiB, ignoring the window. */
function sendIgnoringWindow(c: RawH2Client, id: number, bytes: number): void {
  const mib = Buffer.alloc(1024 * 1024, 0x61);
  for (let sent = 0; sent < bytes && !c.isClosed; sent += mib.length) {
    c.data(id, bytes - sent >= mib.length ? mib : mib.subarray(0, bytes - sent));
  }
}

/**
 * The server's answer to DATA or window credit beyond flow control: RST_STREAM on the stream, or
 * (newer nghttp2) GOAWAY on the connection; resolves with the error code either carries.
 */
async function flowControlRejection(
  c: RawH2Client,
  id: number,
  timeoutMs: number,
): Promise<{ code: number }> {
  const f = await c.waitFor(
    (x) => (x.streamId === id && x.type === FrameType.RST_STREAM) || x.type === FrameType.GOAWAY,
    timeoutMs,
    'RST_STREAM or GOAWAY',
  );
  return { code: f.type === FrameType.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0) };
}

describe('WINDOW_UPDATE abuse', () => {
  it('connection window pushed past 2^31-1: GOAWAY and the connection is closed', async () => {
    const { srv, port } = await h.server_(echo, LIVENESS);
    const c = await attacker(port);
    c.send(windowUpdateFrame(0, 0x7fffffff));
    const closed = await c.waitForClose(5_000);
    // RFC 9113 6.9.1 asks for FLOW_CONTROL_ERROR; node's session teardown writes INTERNAL_ERROR.
    expect([ErrorCode.FLOW_CONTROL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(closed?.goaway?.errorCode);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  it('stream window pushed past 2^31-1: RST_STREAM(FLOW_CONTROL_ERROR) on that stream', async () => {
    const { port } = await h.server_(echo, LIVENESS);
    const c = await attacker(port);
    const id = c.connectRequest('10.0.0.1:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    c.send(windowUpdateFrame(id, 0x7fffffff));
    expect(await flowControlRejection(c, id, 5_000)).toEqual({ code: ErrorCode.FLOW_CONTROL_ERROR });
    // node then tears the connection down too (node 20 treats nghttp2's stream error as fatal;
    // newer nghttp2 answers with GOAWAY(FLOW_CONTROL_ERROR) at once).
    await c.waitForClose(3_000);
    await h.expectStillServes(port);
  });

  it.each([
    ['the connection', 0],
    ['a stream', 1],
  ])('a zero increment on %s: GOAWAY (RFC 9113 6.9: PROTOCOL_ERROR)', async (_what, stream) => {
    const { srv, port } = await h.server_(echo, LIVENESS);
    const c = await attacker(port);
    if (stream) expect(await c.outcome(c.connectRequest('10.0.0.1:80'))).toMatchObject({ status: 200 });
    c.send(windowUpdateFrame(stream, 0));
    const closed = await c.waitForClose(5_000);
    expect([ErrorCode.PROTOCOL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(closed?.goaway?.errorCode);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });
});

describe('DATA beyond the granted window, into a tunnel nobody reads', () => {
  it('one stream: the server holds at most its 4 MiB window, then RST_STREAM(FLOW_CONTROL_ERROR)', async () => {
    const server = stalledServer();
    const { port } = await h.server_(server.handler);
    const c = await attacker(port);
    const id = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    const mem = memoryWatch();
    sendIgnoringWindow(c, id, 8 * 1024 * 1024);
    const rejection = await flowControlRejection(c, id, 10_000);
    expect(rejection).toEqual({ code: ErrorCode.FLOW_CONTROL_ERROR });
    const buffered = server.buffered();
    const growth = mem();
    reportAttack('8 MiB of DATA into a 4 MiB window', { bufferedBytes: buffered, ...growth });
    expect(buffered).toBeLessThanOrEqual(INITIAL_STREAM_WINDOW_BYTES + 64 * 1024);
    // nghttp2 1.61 (node 20) resets only the stream and the connection lives on; newer nghttp2
    // (node 22+) treats it as a connection error (GOAWAY). Either way the 4 MiB bound holds.
    await h.expectStillServes(port);
  });

  it('within the window, a stalled tunnel makes the peer wait: no WINDOW_UPDATE for that stream', async () => {
    const server = stalledServer();
    const { port } = await h.server_(server.handler);
    const c = await attacker(port);
    const id = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    sendIgnoringWindow(c, id, INITIAL_STREAM_WINDOW_BYTES);
    await expect.poll(() => server.buffered(), { timeout: 5_000 }).toBe(INITIAL_STREAM_WINDOW_BYTES);
    await new Promise((r) => setTimeout(r, 200));
    const streamCredit = c.frames.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === id);
    expect(streamCredit).toEqual([]);
    // Reading the tunnel gives the window back.
    server.tunnels[0]!.resume();
    await c.waitFor(
      (f) => f.type === FrameType.WINDOW_UPDATE && f.streamId === id,
      5_000,
      'stream WINDOW_UPDATE',
    );
  });

  // node returns connection-level window as soon as DATA arrives (nghttp2_session_consume_connection
  // in OnDataChunkReceived) and holds back only the stream windows, so the 16 MiB connection window
  // bounds nothing by itself: one connection could park MAX_CONCURRENT_STREAMS x 4 MiB (800 MiB)
  // in tunnels its handler does not read. The inbound budget (inbound-budget.ts) shrinks every
  // stream window to 16 KiB once the connection holds 16 MiB, and gives up a connection that
  // bursts past 4 x that into windows it is being told to shrink.
  it('many streams, a burst within 4 x the budget: the connection lives, new streams get 16 KiB windows', async () => {
    const server = stalledServer();
    const { port } = await h.server_(server.handler);
    const c = await attacker(port);
    const ids = Array.from({ length: 10 }, () => c.connectRequest('10.0.0.9:80'));
    for (const id of ids) expect(await c.outcome(id)).toMatchObject({ status: 200 });
    for (const id of ids) sendIgnoringWindow(c, id, INITIAL_STREAM_WINDOW_BYTES);
    await c.drained(10_000);
    await expect.poll(() => server.buffered(), { timeout: 5_000 }).toBe(10 * INITIAL_STREAM_WINDOW_BYTES);
    // The windows were taken back on the wire, once the connection held the budget.
    const shrink = await c.waitFor(
      (f) =>
        f.type === FrameType.SETTINGS &&
        (f.flags & FrameFlag.ACK) === 0 &&
        parseSettings(f).some(
          ([k, v]) => k === SettingId.INITIAL_WINDOW_SIZE && v === CLAMPED_STREAM_WINDOW_BYTES,
        ),
      5_000,
      'SETTINGS INITIAL_WINDOW_SIZE=16384',
    );
    expect(shrink).toBeDefined();
    expect(c.isClosed).toBe(false);
    // A new stream now has 16 KiB of window: 1 MiB of DATA breaks flow control.
    const late = c.connectRequest('10.0.0.9:80');
    expect(await c.outcome(late)).toMatchObject({ status: 200 });
    sendIgnoringWindow(c, late, 1024 * 1024);
    expect(await flowControlRejection(c, late, 5_000)).toEqual({ code: ErrorCode.FLOW_CONTROL_ERROR });
    // The late stream took its 16 KiB window, plus what its tunnel buffers (64 KiB) before the
    // stream stops being read, plus the chunk that crossed the window (as in the one-stream test).
    expect(server.buffered()).toBeLessThanOrEqual(
      10 * INITIAL_STREAM_WINDOW_BYTES + CLAMPED_STREAM_WINDOW_BYTES + 64 * 1024 + 64 * 1024,
    );
    await h.expectStillServes(port);
  });

  it('many streams, a burst past 4 x the budget: GOAWAY(ENHANCE_YOUR_CALM), held bytes stay under the limit', async () => {
    const server = stalledServer();
    const { srv, port } = await h.server_(server.handler);
    const errors: Error[] = [];
    srv.on('clientError', (e: Error) => errors.push(e));
    const c = await attacker(port);
    c.pause(); // never reads our SETTINGS: the windows stay 4 MiB from its side
    const ids = Array.from({ length: 20 }, () => c.connectRequest('10.0.0.9:80'));
    const mem = memoryWatch();
    let peak = 0;
    const sampler = setInterval(() => {
      peak = Math.max(peak, server.buffered());
    }, 5);
    h.defer(() => clearInterval(sampler));
    for (const id of ids) sendIgnoringWindow(c, id, INITIAL_STREAM_WINDOW_BYTES);
    await expect.poll(() => srv.connections, { timeout: 10_000 }).toBe(0);
    clearInterval(sampler);
    const growth = mem();
    reportAttack('20 streams x 4 MiB burst', { peakHeldMiB: peak / 2 ** 20, ...growth });
    expect(errors.some((e) => e instanceof SessionClosedError && /ENHANCE_YOUR_CALM/.test(e.message))).toBe(
      true,
    );
    // 64 MiB, plus the one DATA frame (1 MiB) that crossed it.
    expect(peak).toBeLessThanOrEqual(INBOUND_HARD_LIMIT_FACTOR * INBOUND_BUDGET_BYTES + 1024 * 1024);
    // The connection's tunnels are gone with it (and with them what they held).
    expect(server.tunnels.every((t) => t.destroyed)).toBe(true);
    // Our GOAWAY(ENHANCE_YOUR_CALM) queues behind what this peer never read: it may not arrive
    // before the socket closes; the close does.
    c.resume();
    const closed = await c.waitForClose(5_000);
    expect(closed).toBeDefined();
    if (closed?.goaway !== undefined) expect(closed.goaway.errorCode).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    await h.expectStillServes(port);
  });
});
