/**
 * Header blocks that are too large, too many, or lie about their content. The server advertises
 * SETTINGS_MAX_HEADER_LIST_SIZE 64 KiB (ztunnel); node enforces it per stream with
 * RST_STREAM(ENHANCE_YOUR_CALM), nghttp2's HPACK decoder refuses a single field above 64 KiB as a
 * connection error (GOAWAY COMPRESSION_ERROR). Baggage that fits reaches the handler, whose
 * parsers throw typed errors without hurting the server.
 */
import {
  continuationFrame,
  ErrorCode,
  encodeHeaderBlock,
  FrameType,
  type HeaderField,
  headersFrame,
  hpackIndexed,
  hpackLiteralWithIndexing,
  memoryWatch,
  type RawH2Client,
  reportAttack,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import { InvalidBaggageError, type TunnelHandler } from '../src/index.js';
import { echo, useHarness } from './harness.js';

const h = useHarness();

/** The harness check, with the baggage the handlers here parse. */
const expectStillServes = (port: number): Promise<number> =>
  h.expectStillServes(port, { baggage: { namespace: 'default' } });

/** Reads the workload from baggage like a real handler; a bad header gets 400, a good one an echo. */
function baggageServer(): {
  handler: TunnelHandler;
  calls: () => number;
  errors: unknown[];
  parseMs: number[];
} {
  let calls = 0;
  const errors: unknown[] = [];
  const parseMs: number[] = [];
  return {
    calls: () => calls,
    errors,
    parseMs,
    handler: (t) => {
      calls++;
      const started = performance.now();
      try {
        t.workload();
      } catch (err) {
        parseMs.push(performance.now() - started);
        errors.push(err);
        t.reject(400);
        return;
      }
      return echo(t);
    },
  };
}

/**
 * nghttp2 answers some connection errors with GOAWAY and then stops reading without closing the
 * socket (node does not close it either); the server's PING liveness is what ends such a
 * connection. Short PING timings make that quick here (defaults: 10 s + 20 s).
 */
const LIVENESS = { pingIntervalMs: 100, pingTimeoutMs: 200 };

async function expectGoawayThenClose(c: RawH2Client, code: number): Promise<void> {
  const goaway = await c.waitFor((f) => f.type === FrameType.GOAWAY, 5_000, 'GOAWAY');
  expect(goaway.payload.readUInt32BE(4)).toBe(code);
  const closed = await c.waitForClose(3_000);
  expect(closed?.byPeer).toBe(true);
}

const CONNECT: HeaderField[] = [
  [':method', 'CONNECT'],
  [':authority', '10.0.0.1:80'],
];

describe('header lists beyond SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB)', () => {
  it('20 fields of 4 KiB (80 KiB): RST_STREAM(ENHANCE_YOUR_CALM), the connection lives on', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const fields = Array.from({ length: 20 }, (_, i): HeaderField => [`x-filler-${i}`, 'f'.repeat(4096)]);
    const id = c.request([...CONNECT, ...fields]);
    expect(await c.outcome(id)).toEqual({ kind: 'reset', code: ErrorCode.ENHANCE_YOUR_CALM });
    expect(await c.outcome(c.request(CONNECT))).toMatchObject({ kind: 'response', status: 200 });
    expect(server.calls()).toBe(1);
    await expectStillServes(port);
  });

  it('just under the limit (60 KiB) is served', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const id = c.request([...CONNECT, ['x-filler', 'f'.repeat(60 * 1024)]]);
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
  });

  it('one field of 70 KiB: nghttp2 refuses it as a connection error, GOAWAY(COMPRESSION_ERROR)', async () => {
    const server = baggageServer();
    const { srv, port } = await h.server_(server.handler, LIVENESS);
    const c = await h.attacker(port);
    c.request([...CONNECT, ['x-filler', 'f'.repeat(70 * 1024)]]);
    await expectGoawayThenClose(c, ErrorCode.COMPRESSION_ERROR);
    expect(server.calls()).toBe(0);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await expectStillServes(port);
  });

  it('more than 128 fields (node maxHeaderListPairs): RST_STREAM(ENHANCE_YOUR_CALM)', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const fields = Array.from({ length: 200 }, (_, i): HeaderField => [`x-f${i}`, 'v']);
    expect(await c.outcome(c.request([...CONNECT, ...fields]))).toEqual({
      kind: 'reset',
      code: ErrorCode.ENHANCE_YOUR_CALM,
    });
    expect(server.calls()).toBe(0);
    await expectStillServes(port);
  });

  it('an HPACK bomb (one 4 KB field indexed, then referenced 10,000 times at a byte each): reset, not decoded', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    const id = c.nextStreamId();
    const block = Buffer.concat([
      encodeHeaderBlock(CONNECT),
      hpackLiteralWithIndexing('x-bomb', 'b'.repeat(4000)),
      ...Array.from({ length: 10_000 }, () => hpackIndexed(62)), // 62: the newest dynamic entry
    ]);
    c.send(headersFrame(id, block));
    expect(await c.outcome(id)).toEqual({ kind: 'reset', code: ErrorCode.ENHANCE_YOUR_CALM });
    const growth = mem();
    reportAttack('HPACK bomb (40 MB decoded from 14 KB)', { blockBytes: block.length, ...growth });
    expect(growth.heapUsedMiB).toBeLessThan(32);
    expect(server.calls()).toBe(0);
    await expectStillServes(port);
  });

  it('a CONTINUATION flood (CVE-2024-27316 style): the connection is closed within a bounded number of frames', async () => {
    const server = baggageServer();
    const { srv, port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    const id = c.nextStreamId();
    c.send(headersFrame(id, encodeHeaderBlock(CONNECT), { endHeaders: false }));
    const piece = encodeHeaderBlock([['x-more', 'm'.repeat(100)]]);
    let frames = 0;
    for (; frames < 100_000 && !c.isClosed; frames++) {
      c.send(continuationFrame(id, piece, false));
      if (frames % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    const closed = await c.waitForClose(5_000);
    expect(closed?.byPeer).toBe(true);
    expect(frames).toBeLessThan(100_000);
    expect(server.calls()).toBe(0);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    reportAttack('CONTINUATION flood', { framesSent: frames, goaway: closed?.goaway, ...mem() });
    await expectStillServes(port);
  });
});

describe('baggage from a hostile peer reaches the handler only as a typed error', () => {
  it('10,000 baggage members (40 KB, under the header limit): InvalidBaggageError, parsed in bounded time', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const baggage = Array.from({ length: 10_000 }, () => 'k=v').join(',');
    const id = c.request([...CONNECT, ['baggage', baggage]]);
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 400 });
    expect(server.errors).toHaveLength(1);
    expect(server.errors[0]).toBeInstanceOf(InvalidBaggageError);
    reportAttack('10,000 baggage members', { parseMs: server.parseMs[0] });
    expect(server.parseMs[0]).toBeLessThan(50);
    await expectStillServes(port);
  });

  it('10,000 members of 8 bytes each (79 KB): beyond the header limit, GOAWAY(COMPRESSION_ERROR)', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler, LIVENESS);
    const c = await h.attacker(port);
    c.request([...CONNECT, ['baggage', Array.from({ length: 10_000 }, (_, i) => `k${i}=v`).join(',')]]);
    await expectGoawayThenClose(c, ErrorCode.COMPRESSION_ERROR);
    expect(server.calls()).toBe(0);
    await expectStillServes(port);
  });

  it('10,000 separate baggage fields: RST_STREAM(ENHANCE_YOUR_CALM)', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const fields = Array.from({ length: 10_000 }, (_, i): HeaderField => ['baggage', `k${i}=v`]);
    expect(await c.outcome(c.request([...CONNECT, ...fields]))).toEqual({
      kind: 'reset',
      code: ErrorCode.ENHANCE_YOUR_CALM,
    });
    expect(server.calls()).toBe(0);
    await expectStillServes(port);
  });

  it('non-ASCII baggage (UTF-8 bytes on the wire): InvalidBaggageError from workload()', async () => {
    const server = baggageServer();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const id = c.request([...CONNECT, ['baggage', Buffer.from('k8s.namespace.name=café', 'utf8')]]);
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 400 });
    expect(server.errors[0]).toBeInstanceOf(InvalidBaggageError);
    expect((server.errors[0] as Error).message).toMatch(/outside visible ASCII/);
    await expectStillServes(port);
  });

  it('a handler that lets InvalidBaggageError escape: handlerError, 503, and the server goes on', async () => {
    const { srv, port } = await h.server_((t) => {
      if (t.baggageHeader.includes('é') || /[^\x20-\x7e]/.test(t.baggageHeader)) t.workload(); // throws
      echo(t);
    });
    const handlerErrors: unknown[] = [];
    srv.on('handlerError', (err: unknown) => handlerErrors.push(err));
    const c = await h.attacker(port);
    const id = c.request([...CONNECT, ['baggage', Buffer.from([0x6b, 0x3d, 0xff, 0xfe])]]);
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 503 });
    expect(handlerErrors).toHaveLength(1);
    expect(handlerErrors[0]).toBeInstanceOf(InvalidBaggageError);
    await expectStillServes(port);
  });

  it('a baggage value carrying CR LF (header injection) never reaches the handler', async () => {
    let seen: unknown = 'handler not called';
    const { port } = await h.server_((t) => {
      if (t.authorityString === '10.0.0.9:80') {
        seen = t.headers.baggage;
        t.reject(503);
        return;
      }
      echo(t);
    });
    const c = await h.attacker(port);
    const id = c.request([
      [':method', 'CONNECT'],
      [':authority', '10.0.0.9:80'],
      ['baggage', 'k=v\r\nx-injected: 1'],
    ]);
    const outcome = await c.outcome(id);
    // nghttp2 drops a field with CR, LF or NUL in its value (RFC 9113 8.2.1): the handler sees
    // the request without it. A reset would do as well; the value must never get through.
    if (outcome.kind === 'reset') expect(outcome.code).toBe(ErrorCode.PROTOCOL_ERROR);
    else expect(seen).toBeUndefined();
    await expectStillServes(port);
  });
});
