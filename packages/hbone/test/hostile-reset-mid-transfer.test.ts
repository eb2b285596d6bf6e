/**
 * Peers that abort in the middle of a transfer: RST_STREAM with an error code (the tunnel fails),
 * RST_STREAM(CANCEL) (end-of-file, HBONE-WIRE.md), a TCP reset of the whole connection, and a
 * hostile server doing the same to our client. Every upstream socket is released, the server
 * keeps serving, and our client reports what happened with a typed error.
 */
import {
  dataFrame,
  ErrorCode,
  encodeHeaderBlock,
  headersFrame,
  memoryWatch,
  type RawH2Client,
  type RawH2ClientOptions,
  reportAttack,
  rstStreamFrame,
  SettingId,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  forwardHandler,
  type IncomingTunnel,
  type JoinResult,
  SessionClosedError,
  StreamResetError,
} from '../src/index.js';
import { type TcpServerMode, tcpServer } from './fixtures.js';
import { onConnect, SERVER_ID, useHarness } from './harness.js';

const h = useHarness();

const MiB = 1024 * 1024;

/** A TCP upstream (see tcpServer), closed after the test; `open()` counts its open sockets. */
async function upstream(mode: TcpServerMode = 'echo') {
  const up = await tcpServer(mode);
  h.defer(up.close);
  return { ...up, open: () => up.sockets.size };
}

async function forwardingServer(mode: TcpServerMode = 'echo') {
  const up = await upstream(mode);
  const completed: Array<JoinResult & { status: number }> = [];
  const { srv, port } = await h.server_(
    forwardHandler({
      resolve: () => ({ host: '127.0.0.1', port: up.port }),
      onComplete: (_t: IncomingTunnel, r) => completed.push(r),
    }),
  );
  return { srv, port, up, completed };
}

/** The harness attacker, granting 4 MiB stream windows and keeping no DATA. */
const attacker = (port: number, extra: Partial<RawH2ClientOptions> = {}): Promise<RawH2Client> =>
  h.attacker(port, { settings: [[SettingId.INITIAL_WINDOW_SIZE, 4 * MiB]], maxDataPerStream: 0, ...extra });

/** Opens a tunnel and sends `bytes` in 16 KiB frames (the server's default frame size). */
async function transfer(c: RawH2Client, bytes: number): Promise<number> {
  const id = c.connectRequest('10.0.0.1:80');
  expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
  const frame = Buffer.alloc(16 * 1024, 0x63);
  for (let sent = 0; sent < bytes; sent += frame.length) c.data(id, frame);
  return id;
}

describe('the client resets a tunnel mid-transfer', () => {
  it('RST_STREAM(INTERNAL_ERROR): the tunnel fails with StreamResetError, the upstream socket is released', async () => {
    const { port, up, completed } = await forwardingServer();
    const c = await attacker(port);
    const id = await transfer(c, MiB);
    await expect.poll(() => c.dataBytesOf(id), { timeout: 5_000 }).toBeGreaterThan(64 * 1024); // echo flowing
    c.reset(id, ErrorCode.INTERNAL_ERROR);
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(1);
    expect(completed[0]!.error).toBeInstanceOf(StreamResetError);
    expect((completed[0]!.error as StreamResetError).h2Code).toBe(ErrorCode.INTERNAL_ERROR);
    await expect.poll(() => up.open(), { timeout: 5_000 }).toBe(0);
    expect(c.isClosed).toBe(false);
    await h.expectStillServes(port);
  });

  it('RST_STREAM(CANCEL): end-of-file for the server, the upstream gets its FIN and is released', async () => {
    const { port, up, completed } = await forwardingServer();
    const c = await attacker(port);
    const id = await transfer(c, MiB);
    await expect.poll(() => c.dataBytesOf(id), { timeout: 5_000 }).toBeGreaterThan(64 * 1024);
    c.reset(id, ErrorCode.CANCEL);
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(1);
    expect(completed[0]!.error).not.toBeInstanceOf(StreamResetError);
    await expect.poll(() => up.open(), { timeout: 5_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  it('into an upstream that has stopped reading: our side of the upstream connection is released', async () => {
    const { port, up, completed } = await forwardingServer('stalled');
    const c = await attacker(port);
    const id = await transfer(c, 4 * MiB);
    await expect.poll(() => up.accepted()).toBe(1);
    await new Promise((r) => setTimeout(r, 200)); // the upstream's buffers fill up
    c.reset(id, ErrorCode.INTERNAL_ERROR);
    // The join resolves once our socket to the upstream has closed (the upstream itself, not
    // reading, cannot notice our FIN: that part is its business).
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(1);
    expect(completed[0]!.error).toBeInstanceOf(StreamResetError);
  });

  // Once a bug (join.ts): RST_STREAM(CANCEL) is end-of-file, so the tunnel ends both ways and
  // closes; `socket.pipe(tunnel)` then unpiped and left the upstream socket paused, never read
  // again, so an upstream still sending kept the socket (and the join) open for good. joinTunnel
  // now lets go of the socket when the tunnel closes.
  it('RST_STREAM(CANCEL) while the upstream is still sending: the upstream socket is released', async () => {
    const { port, up, completed } = await forwardingServer('talker');
    const c = await attacker(port);
    const id = await transfer(c, 64 * 1024);
    await expect.poll(() => c.dataBytesOf(id), { timeout: 5_000 }).toBeGreaterThan(64 * 1024);
    c.reset(id, ErrorCode.CANCEL);
    await expect.poll(() => completed.length, { timeout: 3_000 }).toBe(1);
    await expect.poll(() => up.open(), { timeout: 3_000 }).toBe(0);
  });

  it('100 tunnels reset mid-transfer at once: every upstream released, memory back', async () => {
    const { port, up, completed } = await forwardingServer();
    // A short frame log: what is measured is then what the server and the upstreams keep, not
    // the attacker's record of 12.5 MiB of echoed DATA frames.
    const c = await attacker(port, { maxLoggedFrames: 100 });
    const mem = memoryWatch();
    const ids: number[] = [];
    for (let i = 0; i < 100; i++) ids.push(await transfer(c, 128 * 1024));
    await expect.poll(() => up.accepted(), { timeout: 5_000 }).toBe(100);
    c.send(...ids.map((id, i) => rstStreamFrame(id, i % 2 ? ErrorCode.CANCEL : ErrorCode.INTERNAL_ERROR)));
    await expect.poll(() => completed.length, { timeout: 10_000 }).toBe(100);
    await expect.poll(() => up.open(), { timeout: 5_000 }).toBe(0);
    // Memory comes back (buffers in flight when the resets landed are freed a little later: the
    // first reading ranges 0-26 MiB, the settled one 0-1 MiB).
    let growth = mem();
    await expect
      .poll(
        () => {
          growth = mem();
          return growth.heapUsedMiB + growth.arrayBuffersMiB;
        },
        { timeout: 5_000, interval: 250 },
      )
      .toBeLessThan(8);
    reportAttack('100 tunnels reset mid-transfer', { ...growth });
    expect(completed.filter((r) => r.error instanceof StreamResetError)).toHaveLength(50);
    await h.expectStillServes(port);
  });

  it('a TCP reset of the whole connection: every tunnel fails with SessionClosedError, all released', async () => {
    const { srv, port, up, completed } = await forwardingServer();
    const c = await attacker(port);
    for (let i = 0; i < 10; i++) await transfer(c, 256 * 1024);
    await expect.poll(() => up.accepted(), { timeout: 5_000 }).toBe(10);
    c.tcp.resetAndDestroy();
    await expect.poll(() => completed.length, { timeout: 5_000 }).toBe(10);
    expect(completed.every((r) => r.error instanceof SessionClosedError)).toBe(true);
    await expect.poll(() => up.open(), { timeout: 5_000 }).toBe(0);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });
});

describe('a hostile server resets our tunnel mid-transfer', () => {
  /** Answers the CONNECT with 200, sends 256 KiB, then `then` (a reset or a TCP reset). */
  async function resettingServer(then: 'rst-internal' | 'rst-cancel' | 'tcp-reset') {
    return h.hostileServer(
      onConnect((peer, id) => {
        const chunk = Buffer.alloc(16 * 1024, 0x64);
        peer.send(
          headersFrame(id, encodeHeaderBlock([[':status', '200']])),
          ...Array.from({ length: 2 }, () => dataFrame(id, chunk)),
        );
        setTimeout(() => {
          if (then === 'rst-internal') peer.reset(id, ErrorCode.INTERNAL_ERROR);
          if (then === 'rst-cancel') peer.reset(id, ErrorCode.CANCEL);
          if (then === 'tcp-reset') peer.destroy();
        }, 50);
      }),
    );
  }

  async function openAndRead(port: number) {
    const session = await h.connect(port, { expectedIdentities: [SERVER_ID], pingIntervalMs: 0 });
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    let received = 0;
    tunnel.on('data', (c: Buffer) => {
      received += c.length;
    });
    const outcome = await new Promise<unknown>((resolve) => {
      tunnel.once('error', resolve);
      tunnel.once('end', () => resolve('eof'));
    });
    return { outcome, received };
  }

  it('RST_STREAM(INTERNAL_ERROR): StreamResetError with the code, after the bytes that came before it', async () => {
    const { outcome, received } = await openAndRead(await resettingServer('rst-internal'));
    expect(outcome).toBeInstanceOf(StreamResetError);
    expect((outcome as StreamResetError).h2Code).toBe(ErrorCode.INTERNAL_ERROR);
    expect(received).toBe(32 * 1024);
  });

  it('RST_STREAM(CANCEL): a clean end-of-file after the bytes', async () => {
    const { outcome, received } = await openAndRead(await resettingServer('rst-cancel'));
    expect(outcome).toBe('eof');
    expect(received).toBe(32 * 1024);
  });

  it('the connection dropped: SessionClosedError, not end-of-file', async () => {
    const { outcome, received } = await openAndRead(await resettingServer('tcp-reset'));
    expect(outcome).toBeInstanceOf(SessionClosedError);
    expect(received).toBe(32 * 1024);
  });
});
