/**
 * HTTP/2 "rapid reset" (CVE-2023-44487): open a stream and reset it at once, thousands of times.
 * The stream leaves the peer's concurrency count the moment it is reset, but the server has
 * already started work for it: with the forwarding handler, an upstream TCP dial per CONNECT.
 * The server must bound that work per connection and close the connection of a peer that keeps
 * resetting streams it never let us answer, while tunnels that are answered and then cancelled,
 * at any rate, stay legitimate.
 */
import {
  ErrorCode,
  encodeHeaderBlock,
  headersFrame,
  memoryWatch,
  type RawH2Client,
  reportAttack,
  rstStreamFrame,
  windowUpdateFrame,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  forwardHandler,
  type HboneServerOptions,
  SessionClosedError,
  type TunnelHandler,
} from '../src/index.js';
import { echoServer } from './fixtures.js';
import { echo, expectEcho, useHarness } from './harness.js';

const h = useHarness();

/** The ready-made forwarding handler to a TCP echo upstream (counting its dials), counting its calls. */
async function forwardingServer(extra: Partial<HboneServerOptions> = {}) {
  const upstream = await echoServer();
  h.defer(upstream.close);
  let calls = 0;
  const forward = forwardHandler({ resolve: () => ({ host: '127.0.0.1', port: upstream.port }) });
  const handler: TunnelHandler = (t) => {
    calls++;
    return forward(t);
  };
  const { srv, port } = await h.server_(handler, extra);
  const clientErrors: Error[] = [];
  srv.on('clientError', (err: Error) => clientErrors.push(err));
  return { srv, port, upstream, calls: () => calls, clientErrors };
}

const CONNECT = encodeHeaderBlock([
  [':method', 'CONNECT'],
  [':authority', '10.0.0.1:80'],
]);

/**
 * Opens streams with a CONNECT, each followed at once by `then(id)`, 100 per write, until
 * `total` are sent or the server closed the connection; returns how many were sent.
 */
async function sendPairs(c: RawH2Client, total: number, then: (id: number) => Buffer): Promise<number> {
  let pairs = 0;
  while (pairs < total && !c.isClosed) {
    const frames: Buffer[] = [];
    for (let i = 0; i < 100; i++) {
      const id = c.nextStreamId();
      frames.push(headersFrame(id, CONNECT), then(id));
    }
    c.send(...frames);
    pairs += 100;
    await new Promise((r) => setImmediate(r));
  }
  return pairs;
}

/** Ours (ENHANCE_YOUR_CALM), or newer nghttp2's own rapid-reset limit (INTERNAL_ERROR). */
const RAPID_RESET_GOAWAY_CODES = [ErrorCode.ENHANCE_YOUR_CALM, ErrorCode.INTERNAL_ERROR];

describe('rapid reset', () => {
  // The default server reads through a write-buffered socket: a stream reset in the same read as
  // its HEADERS is gone before the handler sees it. On node's socket path the handler runs (and
  // dials) for each stream first: the guard must bound both.
  it.each([
    ['the default server', {}],
    ["node's socket path", { bufferWrites: false }],
  ])('10,000 HEADERS + RST_STREAM(CANCEL) on %s: GOAWAY(ENHANCE_YOUR_CALM), closed, bounded dials', async (_name, extra) => {
    const { srv, port, upstream, calls, clientErrors } = await forwardingServer(extra);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    const started = Date.now();
    const pairs = await sendPairs(c, 10_000, (id) => rstStreamFrame(id, ErrorCode.CANCEL));
    const closed = await c.waitForClose(5_000);
    const elapsedMs = Date.now() - started;
    await new Promise((r) => setTimeout(r, 200)); // dials in flight land
    const growth = mem();
    reportAttack(`rapid reset (forwarding handler, ${_name})`, {
      pairsSent: pairs,
      handlerCalls: calls(),
      upstreamDials: upstream.accepted(),
      goaway: closed?.goaway,
      closedAfterMs: closed?.afterMs,
      elapsedMs,
      ...growth,
    });
    expect(closed?.byPeer).toBe(true);
    // Our guard answers GOAWAY(ENHANCE_YOUR_CALM); newer nghttp2 (node 22+) has its own
    // rapid-reset limit that may fire first, with GOAWAY(INTERNAL_ERROR). Either closes the
    // connection within the same bounds.
    expect(RAPID_RESET_GOAWAY_CODES).toContain(closed?.goaway?.errorCode);
    expect(calls()).toBeLessThanOrEqual(400);
    expect(upstream.accepted()).toBeLessThanOrEqual(400);
    expect(elapsedMs).toBeLessThan(5_000);
    expect(growth.heapUsedMiB).toBeLessThan(64);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    if (closed?.goaway?.errorCode === ErrorCode.ENHANCE_YOUR_CALM) {
      expect(clientErrors.some((e) => e instanceof SessionClosedError && /reset/.test(e.message))).toBe(true);
    }
    await h.expectStillServes(port);
  });

  it('RST_STREAM(NO_ERROR) counts too: a reset before the answer is a reset whatever its code', async () => {
    const { srv, port, calls } = await forwardingServer();
    const c = await h.attacker(port);
    await sendPairs(c, 5_000, (id) => rstStreamFrame(id, ErrorCode.NO_ERROR));
    const closed = await c.waitForClose(5_000);
    expect(RAPID_RESET_GOAWAY_CODES).toContain(closed?.goaway?.errorCode);
    expect(calls()).toBeLessThanOrEqual(400);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  it('"made you reset": HEADERS + a stream WINDOW_UPDATE overflow, so the server resets; closed at once', async () => {
    const { srv, port, calls } = await forwardingServer();
    const c = await h.attacker(port);
    const pairs = await sendPairs(c, 5_000, (id) => windowUpdateFrame(id, 0x7fffffff));
    const closed = await c.waitForClose(5_000);
    reportAttack('made-you-reset (WINDOW_UPDATE overflow per stream)', {
      pairsSent: pairs,
      handlerCalls: calls(),
      closedAfterMs: closed?.afterMs,
      goaway: closed?.goaway,
    });
    expect(closed?.byPeer).toBe(true);
    expect(calls()).toBeLessThanOrEqual(400);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });
});

describe('what is not rapid reset', () => {
  it('500 tunnels answered with 200 and then cancelled, 50 at a time, on one connection', async () => {
    const { srv, port, clientErrors } = await forwardingServer();
    const session = await h.connect(port);
    for (let round = 0; round < 10; round++) {
      const tunnels = await Promise.all(
        Array.from({ length: 50 }, () => session.open({ authority: '10.0.0.1:80' })),
      );
      for (const t of tunnels) {
        t.on('error', () => {});
        t.destroy(); // RST_STREAM(CANCEL) after the 200
      }
    }
    await expectEcho(session, 'after 500 cancels');
    expect(srv.connections).toBe(1);
    expect(clientErrors).toEqual([]);
  });

  it('150 CONNECTs given up before their answer (a client timing out on a slow upstream) keep the connection', async () => {
    let calls = 0;
    const { srv, port } = await h.server_((t) => {
      calls++;
      if (t.authority.host === '10.0.0.9') return; // never answered: the client will give up
      echo(t);
    });
    const c = await h.attacker(port);
    const slow = encodeHeaderBlock([
      [':method', 'CONNECT'],
      [':authority', '10.0.0.9:80'],
    ]);
    const ids = Array.from({ length: 150 }, () => c.nextStreamId());
    c.send(...ids.map((id) => headersFrame(id, slow)));
    await expect.poll(() => calls).toBe(150);
    c.send(...ids.map((id) => rstStreamFrame(id, ErrorCode.CANCEL)));
    const good = c.connectRequest('10.0.0.1:80');
    expect(await c.outcome(good)).toMatchObject({ kind: 'response', status: 200 });
    expect(c.isClosed).toBe(false);
    expect(srv.connections).toBe(1);
  });
});
