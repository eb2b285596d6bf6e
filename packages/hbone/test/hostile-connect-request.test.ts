/**
 * Malformed CONNECT requests from an authenticated peer. RFC 9113 8.5 and ztunnel: a CONNECT
 * carries `:method` and `:authority` only; nghttp2 resets anything else with PROTOCOL_ERROR before
 * our server sees it, and the server answers 400 for another method or an authority it cannot
 * parse. None of them may reach the handler, and the connection and server go on serving.
 */
import { ErrorCode, FrameType, type HeaderField, memoryWatch, reportAttack } from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import { countingEcho, useHarness } from './harness.js';

const h = useHarness();

const CONNECT = (authority: string): HeaderField[] => [
  [':method', 'CONNECT'],
  [':authority', authority],
];

describe('malformed CONNECTs are reset with PROTOCOL_ERROR before the handler', () => {
  const cases: Array<[string, HeaderField[]]> = [
    ['no :authority', [[':method', 'CONNECT']]],
    ['an empty :authority', CONNECT('')],
    ['a :path', [...CONNECT('10.0.0.1:80'), [':path', '/']]],
    ['a :scheme', [...CONNECT('10.0.0.1:80'), [':scheme', 'https']]],
    [
      'a :protocol (extended CONNECT is not enabled)',
      [...CONNECT('10.0.0.1:80'), [':protocol', 'websocket']],
    ],
    ['two :authority fields', [...CONNECT('10.0.0.1:80'), [':authority', '10.0.0.2:80']]],
    [
      'a pseudo-header after a regular field',
      [
        [':method', 'CONNECT'],
        ['baggage', 'k=v'],
        [':authority', '10.0.0.1:80'],
      ],
    ],
    ['an uppercase field name', [...CONNECT('10.0.0.1:80'), ['Baggage', 'k=v']]],
    ['a connection-specific field', [...CONNECT('10.0.0.1:80'), ['connection', 'keep-alive']]],
    ['spaces in :authority', CONNECT('not an authority')],
    ['no :method', [[':authority', '10.0.0.1:80']]],
    [
      'a GET without :path and :scheme',
      [
        [':method', 'GET'],
        [':authority', '10.0.0.1:80'],
      ],
    ],
  ];

  it.each(cases)('CONNECT with %s', async (_name, fields) => {
    const server = countingEcho();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const id = c.request(fields);
    expect(await c.outcome(id)).toEqual({ kind: 'reset', code: ErrorCode.PROTOCOL_ERROR });
    // A stream error: the same connection still carries a good CONNECT.
    const good = c.request(CONNECT('10.0.0.1:80'));
    expect(await c.outcome(good)).toMatchObject({ kind: 'response', status: 200 });
    expect(server.calls()).toBe(1);
    await h.expectStillServes(port);
  });
});

describe('a CONNECT the server cannot use is answered 400, `:status` only', () => {
  const cases: Array<[string, HeaderField[]]> = [
    ['port 0', CONNECT('10.0.0.1:0')],
    ['port 65536', CONNECT('10.0.0.1:65536')],
    ['no port', CONNECT('10.0.0.1')],
    ['a port with a leading zero', CONNECT('10.0.0.1:080')],
    ['a named port', CONNECT('10.0.0.1:http')],
    ['IPv6 without brackets', CONNECT('fd00::2:8080')],
    ['userinfo', CONNECT('user@10.0.0.1:80')],
    ['a zone id', CONNECT('[fe80::1%eth0]:80')],
    ['a word', CONNECT('not-an-authority')],
    ['an authority of 10,000 bytes', CONNECT(`${'a'.repeat(10_000)}:80`)],
    [
      'GET',
      [
        [':method', 'GET'],
        [':scheme', 'https'],
        [':path', '/'],
        [':authority', '10.0.0.1:80'],
      ],
    ],
    [
      'POST',
      [
        [':method', 'POST'],
        [':scheme', 'https'],
        [':path', '/upload'],
        [':authority', '10.0.0.1:80'],
      ],
    ],
  ];

  it.each(cases)('%s', async (name, fields) => {
    const server = countingEcho();
    const { port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const id = c.request(fields);
    const outcome = await c.outcome(id);
    if (name === 'userinfo' && outcome.kind === 'reset') {
      // nghttp2 >= 1.62 (Node 22+) finds an '@' in :authority malformed itself (RFC 9113 8.3.1:
      // no userinfo) and resets the stream before we see it; 1.61 (Node 20) lets it reach us: 400.
      expect(outcome).toEqual({ kind: 'reset', code: ErrorCode.PROTOCOL_ERROR });
    } else {
      expect(outcome).toEqual({ kind: 'response', status: 400, headers: [[':status', '400']] });
      expect(c.endedByPeer(id)).toBe(true);
    }
    expect(server.calls()).toBe(0);
    await h.expectStillServes(port);
  });
});

describe('floods of malformed CONNECTs', () => {
  it('1,000 answered with 400 on one connection: each answer closes its stream, the connection keeps working', async () => {
    // The client never ends or resets its side of the rejected streams: node closes each one with
    // RST_STREAM(NO_ERROR) once the answer is out (RFC 9113 8.1), so they free their stream slot.
    // Waves of 100 keep the client under the 200 streams it may have open at once.
    const server = countingEcho();
    const { srv, port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    const started = Date.now();
    const ids: number[] = [];
    for (let i = 0; i < 1_000 && !c.isClosed; i++) {
      ids.push(c.request(CONNECT('10.0.0.1:0')));
      if (i % 100 === 99) {
        const last = ids[ids.length - 1]!;
        await c.waitFor((f) => f.streamId === last && f.type === FrameType.RST_STREAM, 5_000, 'the close');
      }
    }
    const outcomes = await Promise.all(ids.map((id) => c.outcome(id, 5_000)));
    const statuses = outcomes.map((o) => (o.kind === 'response' ? o.status : o.kind));
    expect(statuses.filter((s) => s === 400)).toHaveLength(1_000);
    expect(ids.filter((id) => c.rstCodeOf(id) === ErrorCode.NO_ERROR)).toHaveLength(1_000);
    const good = c.request(CONNECT('10.0.0.1:80'));
    expect(await c.outcome(good)).toMatchObject({ kind: 'response', status: 200 });
    expect(c.isClosed).toBe(false);
    expect(srv.connections).toBe(1);
    const growth = mem();
    reportAttack('1,000 bad-authority CONNECTs on one connection', {
      ms: Date.now() - started,
      ...growth,
    });
    expect(growth.heapUsedMiB).toBeLessThan(64);
    await h.expectStillServes(port);
  });

  it('3,000 CONNECTs with :path: each is reset, and node closes the connection after 1,000 invalid frames', async () => {
    // Paced (ten at a time) so the client stays under MAX_CONCURRENT_STREAMS: what closes the
    // connection is node's maxSessionInvalidFrames (1,000), with GOAWAY.
    const server = countingEcho();
    const { srv, port } = await h.server_(server.handler);
    const c = await h.attacker(port);
    const mem = memoryWatch();
    let sent = 0;
    for (; sent < 3_000 && !c.isClosed; sent++) {
      const id = c.request([...CONNECT('10.0.0.1:80'), [':path', '/']]);
      if (sent % 10 === 9) await c.outcome(id, 5_000);
    }
    const closed = await c.waitForClose(5_000);
    expect(closed?.byPeer).toBe(true);
    expect(closed?.goaway?.errorCode).not.toBe(ErrorCode.NO_ERROR);
    expect(c.count(FrameType.RST_STREAM)).toBeGreaterThan(900);
    expect(c.count(FrameType.RST_STREAM)).toBeLessThanOrEqual(1_001);
    expect(server.calls()).toBe(0);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    reportAttack('3,000 CONNECTs with :path', {
      sentBeforeClose: sent,
      resets: c.count(FrameType.RST_STREAM),
      goaway: closed?.goaway,
      closedAfterMs: closed?.afterMs,
      ...mem(),
    });
    await h.expectStillServes(port);
  });
});
