/**
 * Our client against servers that misbehave after TLS: no SETTINGS, a CONNECT never answered, an
 * answer beyond our SETTINGS_MAX_HEADER_LIST_SIZE (16 KiB), a PUSH_PROMISE we disabled, DATA
 * before the answer, a PING flood. Each ends in a typed error within our deadlines, and the
 * process holds nothing for the dead connection.
 */
import type { AddressInfo } from 'node:net';
import * as tls from 'node:tls';
import {
  dataFrame,
  ErrorCode,
  encodeFrame,
  encodeHeaderBlock,
  FrameFlag,
  FrameType,
  headersFrame,
  memoryWatch,
  parseSettings,
  peerCredentials,
  pingFrame,
  type RawH2Peer,
  reportAttack,
  SettingId,
  settingsAckFrame,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  HboneError,
  HboneTimeoutError,
  type HboneTunnel,
  INBOUND_BUDGET_BYTES,
  INITIAL_STREAM_WINDOW_BYTES,
  SessionClosedError,
  StreamResetError,
} from '../src/index.js';
import { onConnect, SERVER_ID, useHarness } from './harness.js';

const h = useHarness();

const connectOpts = { expectedIdentities: [SERVER_ID], pingIntervalMs: 0 };

describe('a hostile server, seen from our client', () => {
  it('never answers the CONNECT: HboneTimeoutError after connectResponseTimeoutMs, the stream reset', async () => {
    let peer: RawH2Peer | undefined;
    const port = await h.hostileServer((p) => {
      peer = p;
    });
    const session = await h.connect(port, { ...connectOpts, connectResponseTimeoutMs: 300 });
    const started = Date.now();
    const err = await session.open({ authority: '10.0.0.1:80' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneTimeoutError);
    expect(Date.now() - started).toBeLessThan(2_000);
    await peer!.waitFor((f) => f.type === FrameType.RST_STREAM, 2_000, 'our RST_STREAM');
    expect(peer!.rstCodeOf(1)).toBe(ErrorCode.CANCEL);
    expect(session.activeStreams).toBe(0);
  });

  it('answers with a 20 KiB header list (ours is 16 KiB): RST_STREAM(ENHANCE_YOUR_CALM), StreamResetError', async () => {
    // The first stream is answered normally: node applies our SETTINGS_MAX_HEADER_LIST_SIZE only
    // to streams opened after the server acknowledged it, and the first open of a connection
    // races that ACK (such a first stream takes up to node's 64 KiB per field, 128 fields).
    let answered = 0;
    const port = await h.hostileServer((peer) => {
      void (async () => {
        for (;;) {
          const f = await peer
            .waitFor((x) => x.type === FrameType.HEADERS && x.streamId > answered, 5_000)
            .catch(() => undefined);
          if (!f) return;
          answered = f.streamId;
          const filler: Array<[string, string]> =
            f.streamId === 3 ? [['x-filler', 'f'.repeat(20 * 1024)]] : [];
          peer.send(headersFrame(f.streamId, encodeHeaderBlock([[':status', '200'], ...filler])));
        }
      })();
    });
    const session = await h.connect(port, connectOpts);
    (await session.open({ authority: '10.0.0.1:80' })).on('error', () => {}).destroy();
    const err = await session
      .open({ authority: '10.0.0.1:80' }, { timeoutMs: 2_000 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StreamResetError);
    expect((err as StreamResetError).h2Code).toBe(ErrorCode.ENHANCE_YOUR_CALM);
    const third = await session.open({ authority: '10.0.0.1:80' });
    third.on('error', () => {});
    expect(third.responseHeaders[':status']).toBe(200);
    third.destroy();
  });

  it('sends PUSH_PROMISE although we sent ENABLE_PUSH=0: the connection fails, opens fail typed', async () => {
    const port = await h.hostileServer(
      onConnect((peer, id) => {
        const promise = Buffer.concat([
          Buffer.from([0, 0, 0, 2]),
          encodeHeaderBlock([
            [':method', 'GET'],
            [':path', '/'],
            [':scheme', 'https'],
            [':authority', 'x'],
          ]),
        ]);
        peer.send(encodeFrame(FrameType.PUSH_PROMISE, FrameFlag.END_HEADERS, id, promise));
      }),
    );
    const session = await h.connect(port, connectOpts);
    const closed = new Promise((r) => session.once('close', r));
    const err = await session
      .open({ authority: '10.0.0.1:80' }, { timeoutMs: 2_000 })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneError);
    expect(err).not.toBeInstanceOf(HboneTimeoutError);
    await closed;
    await expect(session.open({ authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(SessionClosedError);
  });

  it('sends DATA before its answer: our HTTP/2 answers GOAWAY, the open fails typed within its timeout', async () => {
    let peer: RawH2Peer | undefined;
    const port = await h.hostileServer(
      onConnect((p, id) => {
        peer = p;
        p.send(dataFrame(id, 'too early'), headersFrame(id, encodeHeaderBlock([[':status', '200']])));
      }),
    );
    const session = await h.connect(port, connectOpts);
    const err = await session.open({ authority: '10.0.0.1:80' }, { timeoutMs: 500 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneError);
    await peer!.waitFor((f) => f.type === FrameType.GOAWAY, 2_000, 'our GOAWAY');
  });

  // nghttp2 answers early DATA with GOAWAY(PROTOCOL_ERROR). Node 22 and 24 then fail the session
  // at once. Node 20 (nghttp2 1.61) tells JavaScript nothing: the session stays 'open', the open
  // waits for its CONNECT timeout, and only the PING probe that follows the timeout (or liveness)
  // ends the connection. Either way the connection ends, with a typed error, and later opens
  // fail at once instead of each waiting out its own timeout.
  it('sends DATA before its answer: the connection ends (at once, or by the probe after the timeout) and later opens fail at once', async () => {
    const port = await h.hostileServer(
      onConnect((p, id) => {
        p.send(dataFrame(id, 'too early'), headersFrame(id, encodeHeaderBlock([[':status', '200']])));
      }),
    );
    // Liveness off: on Node 20 only the probe that follows the CONNECT timeout can notice.
    const session = await h.connect(port, { ...connectOpts, pingTimeoutMs: 300 });
    const closed = new Promise<Error | undefined>((r) => session.once('close', r));
    const started = Date.now();
    const err = await session.open({ authority: '10.0.0.1:80' }, { timeoutMs: 300 }).catch((e: unknown) => e);
    if (err instanceof HboneTimeoutError) {
      const reason = await closed;
      expect(reason).toBeInstanceOf(SessionClosedError);
      expect((reason as Error).message).toMatch(/nor a PING within 300 ms/);
    } else {
      expect(err).toBeInstanceOf(SessionClosedError);
      expect(Date.now() - started).toBeLessThan(250);
      await closed;
    }
    expect(session.state).toBe('closed');
    const again = Date.now();
    await expect(session.open({ authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(SessionClosedError);
    expect(Date.now() - again).toBeLessThan(100);
  });

  it('never answers the CONNECT but answers PINGs: the probe after the timeout keeps the connection', async () => {
    const port = await h.hostileServer(() => {});
    const session = await h.connect(port, { ...connectOpts, pingTimeoutMs: 300 });
    const err = await session.open({ authority: '10.0.0.1:80' }, { timeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneTimeoutError);
    await new Promise((r) => setTimeout(r, 700));
    expect(session.state).toBe('open');
  });

  it('answers 200 and resets with REFUSED_STREAM at once: StreamResetError or a failed open, typed', async () => {
    const port = await h.hostileServer(
      onConnect((peer, id) => {
        peer.send(headersFrame(id, encodeHeaderBlock([[':status', '200']])));
        peer.reset(id, ErrorCode.REFUSED_STREAM);
      }),
    );
    const session = await h.connect(port, connectOpts);
    const outcome = await session.open({ authority: '10.0.0.1:80' }).then(
      (tunnel) =>
        new Promise<unknown>((resolve) => {
          tunnel.once('error', resolve);
          tunnel.once('end', () => resolve('eof'));
          tunnel.resume();
        }),
      (err: unknown) => err,
    );
    expect(outcome).toBeInstanceOf(StreamResetError);
    expect((outcome as StreamResetError).h2Code).toBe(ErrorCode.REFUSED_STREAM);
  });

  it('floods our client with 100,000 PINGs: answered or cut, memory bounded', async () => {
    const port = await h.hostileServer((peer) => {
      void (async () => {
        for (let sent = 0; sent < 100_000 && !peer.isClosed; sent += 1_000) {
          peer.send(...Array.from({ length: 1_000 }, (_, i) => pingFrame(BigInt(sent + i))));
          await peer.drained(5_000).catch(() => {});
          await new Promise((r) => setImmediate(r));
        }
      })();
    });
    const mem = memoryWatch();
    const session = await h.connect(port, connectOpts);
    await new Promise((r) => setTimeout(r, 1_500));
    const growth = mem();
    reportAttack('PING flood against our client', { state: session.state, ...growth });
    expect(growth.heapUsedMiB + growth.arrayBuffersMiB).toBeLessThan(32);
  });
});

describe('a server that never completes HTTP/2', () => {
  it('TLS done, no SETTINGS ever: HboneTimeoutError naming the SETTINGS wait', async () => {
    const silent = tls.createServer({
      ...peerCredentials(h.server.minted, h.ca),
      ALPNProtocols: ['h2'],
      requestCert: true,
      rejectUnauthorized: false,
    });
    const sockets = new Set<tls.TLSSocket>();
    silent.on('secureConnection', (s) => {
      sockets.add(s);
      s.on('error', () => {});
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    h.defer(
      () =>
        new Promise<void>((r) => {
          for (const s of sockets) s.destroy();
          silent.close(() => r());
        }),
    );
    const port = (silent.address() as AddressInfo).port;
    const started = Date.now();
    const err = await h.connect(port, { ...connectOpts, handshakeTimeoutMs: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneTimeoutError);
    expect((err as HboneTimeoutError).phase).toMatch(/SETTINGS/);
    expect(Date.now() - started).toBeLessThan(2_000);
  });
});

describe('a server that fills tunnels our application does not read', () => {
  /**
   * Answers every CONNECT with 200 and `bytes` of DATA in 1 MiB frames, at once. Honest about the
   * window a new stream gets (the last SETTINGS_INITIAL_WINDOW_SIZE it read from us, sending no
   * more than that), unless `ignoreWindows`.
   */
  const filler =
    (bytes: number, ignoreWindows = false) =>
    (peer: RawH2Peer): void => {
      const mib = Buffer.alloc(1024 * 1024, 0x62);
      let window = 65_535;
      void (async () => {
        // Frames in the order they arrived, each taken once.
        const done = new WeakSet<object>();
        while (!peer.isClosed) {
          const f = await peer
            .waitFor(
              (x) =>
                !done.has(x) &&
                (x.type === FrameType.HEADERS ||
                  (x.type === FrameType.SETTINGS && (x.flags & FrameFlag.ACK) === 0)),
              5_000,
            )
            .catch(() => undefined);
          if (f === undefined) return;
          done.add(f);
          if (f.type === FrameType.SETTINGS) {
            for (const [k, v] of parseSettings(f)) if (k === SettingId.INITIAL_WINDOW_SIZE) window = v;
            continue;
          }
          peer.send(headersFrame(f.streamId, encodeHeaderBlock([[':status', '200']])));
          const total = ignoreWindows ? bytes : Math.min(bytes, window);
          for (let sent = 0; sent < total; sent += mib.length) {
            peer.data(f.streamId, total - sent >= mib.length ? mib : mib.subarray(0, total - sent));
          }
        }
      })();
    };
  const held = (tunnels: HboneTunnel[]): number =>
    tunnels.reduce((n, t) => n + t.readableLength + t.stream.readableLength, 0);

  it('bursts 20 x 4 MiB before taking our SETTINGS: past 4 x the budget the connection is given up', async () => {
    // ACKs our first SETTINGS (so our 4 MiB windows apply) and never the ones that shrink them.
    let acked = false;
    const port = await h.hostileServer(
      (peer) => {
        void peer
          .waitFor((f) => f.type === FrameType.SETTINGS && (f.flags & FrameFlag.ACK) === 0, 5_000)
          .then(() => {
            if (!acked) peer.send(settingsAckFrame());
            acked = true;
          })
          .catch(() => {});
        filler(INITIAL_STREAM_WINDOW_BYTES, true)(peer);
      },
      { ackSettings: false },
    );
    const session = await h.connect(port, connectOpts);
    const closed = new Promise<Error | undefined>((r) => session.once('close', r));
    const tunnels: HboneTunnel[] = [];
    const opens = Array.from({ length: 20 }, () =>
      session.open({ authority: '10.0.0.1:80' }).then(
        (t) => {
          t.on('error', () => {});
          t.pause();
          tunnels.push(t);
        },
        () => {},
      ),
    );
    await Promise.all(opens);
    const err = await closed;
    expect(err).toBeInstanceOf(SessionClosedError);
    expect((err as Error).message).toMatch(/ENHANCE_YOUR_CALM/);
    expect(tunnels.every((t) => t.destroyed)).toBe(true);
    await expect(session.open({ authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(SessionClosedError);
  });

  it('fills 10 x 4 MiB and takes our SETTINGS: we hold about the budget, not 10 x 4 MiB', async () => {
    const port = await h.hostileServer(filler(INITIAL_STREAM_WINDOW_BYTES));
    const session = await h.connect(port, connectOpts);
    const tunnels: HboneTunnel[] = [];
    for (let i = 0; i < 10; i++) {
      const t = await session.open({ authority: '10.0.0.1:80' });
      t.on('error', () => {});
      t.pause();
      tunnels.push(t);
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    const total = held(tunnels);
    reportAttack('client: 10 tunnels x 4 MiB offered', { heldMiB: total / 2 ** 20, state: session.state });
    // Streams opened after the shrink got 16 KiB windows; the earlier ones hold what they took.
    expect(session.state).toBe('open');
    // Without the budget: 40 MiB. With it: the budget, plus the stream whose DATA crossed it
    // (in flight before our SETTINGS), measured 20.6 MiB.
    expect(total).toBeGreaterThanOrEqual(INBOUND_BUDGET_BYTES);
    expect(total).toBeLessThanOrEqual(INBOUND_BUDGET_BYTES + 2 * INITIAL_STREAM_WINDOW_BYTES);
  });
});
