import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { dial, forwardHandler, type JoinResult, joinTunnel, UpstreamUnavailableError } from '../src/index.js';
import { deadPort, echoServer, payload, readAll, sha256 } from './fixtures.js';
import { useHarness } from './harness.js';

const h = useHarness();

describe('forward handler (ztunnel inbound)', () => {
  it('answers 200 after the upstream connect and pipes bytes both ways with half-close', async () => {
    const echo = await echoServer();
    h.defer(() => echo.close());
    const done: Array<JoinResult & { status: number }> = [];
    const { port } = await h.server_(forwardHandler({ onComplete: (_t, r) => done.push(r) }));
    const session = await h.connect(port);
    const tunnel = await session.open({ authority: `127.0.0.1:${echo.port}` });
    const data = payload(512 * 1024);
    const back = readAll(tunnel);
    tunnel.end(data);
    expect(sha256(await back)).toBe(sha256(data));
    await new Promise((r) => setTimeout(r, 50));
    expect(done[0]).toMatchObject({ status: 200, bytesToTunnel: data.length, bytesFromTunnel: data.length });
  });

  it('answers 503 when the upstream refuses', async () => {
    const dead = await deadPort();
    const { port } = await h.server_(forwardHandler());
    const session = await h.connect(port);
    await expect(session.open({ authority: `127.0.0.1:${dead}` })).rejects.toBeInstanceOf(
      UpstreamUnavailableError,
    );
  });

  it('answers 503 for a hostname authority without a resolver', async () => {
    const { port } = await h.server_(forwardHandler());
    const session = await h.connect(port);
    await expect(
      session.open({ authority: 'checkout.payments.svc.cluster.local:8080' }),
    ).rejects.toBeInstanceOf(UpstreamUnavailableError);
  });

  it('lets an authorize hook deny with 401', async () => {
    const { port } = await h.server_(forwardHandler({ authorize: () => 401 }));
    const session = await h.connect(port);
    const err = await session.open({ authority: '127.0.0.1:1' }).catch((e: unknown) => e);
    expect((err as { status: number }).status).toBe(401);
  });

  it('carries an upstream half-close: the upstream FINs first, we keep sending', async () => {
    // Upstream: sends a greeting and FINs at once, then reads everything we send.
    let received = Buffer.alloc(0);
    const upstreamDone = new Promise<void>((resolve) => {
      const srv = net.createServer({ allowHalfOpen: true }, (s) => {
        s.end('greeting');
        s.on('data', (c: Buffer) => {
          received = Buffer.concat([received, c]);
        });
        s.on('end', () => resolve());
      });
      srv.listen(0, '127.0.0.1');
      h.defer(() => new Promise((r) => srv.close(r)));
      void new Promise((r) => srv.once('listening', r)).then(async () => {
        const { port } = await h.server_(forwardHandler());
        const session = await h.connect(port);
        const tunnel = await session.open({
          authority: `127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
        });
        expect((await readAll(tunnel)).toString()).toBe('greeting');
        tunnel.end('after-fin');
      });
    });
    await upstreamDone;
    expect(received.toString()).toBe('after-fin');
  });
});

describe('dial', () => {
  it('is abandoned at once when its signal aborts (a client that reset its CONNECT)', async () => {
    const echo = await echoServer();
    h.defer(() => echo.close());
    const ac = new AbortController();
    const pending = dial('127.0.0.1', echo.port, 10_000, ac.signal);
    ac.abort();
    await expect(pending).rejects.toMatchObject({ code: 'ABORT_ERR' });
    await expect(dial('127.0.0.1', echo.port, 10_000, AbortSignal.abort())).rejects.toMatchObject({
      code: 'ABORT_ERR',
    });
    // Positive control: without an abort the same dial connects.
    const s = await dial('127.0.0.1', echo.port, 10_000);
    s.destroy();
  });
});

describe('joinTunnel', () => {
  it('resolves with byte counts once both directions close', async () => {
    const { port } = await h.server_((t) => {
      const tunnel = t.accept();
      tunnel.on('error', () => {}); // the client side may go first in teardown
      tunnel.pipe(tunnel);
    });
    const session = await h.connect(port);
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    const [a, b] = await socketPair();
    h.defer(() => {
      a.destroy();
      b.destroy();
    });
    const joined = joinTunnel(tunnel, a);
    const back = readAll(b as never);
    b.end('ping-through');
    expect((await back).toString()).toBe('ping-through');
    const r = await joined;
    expect(r).toMatchObject({ bytesToTunnel: 12, bytesFromTunnel: 12 });
    expect(r.error).toBeUndefined();
  });
});

async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const srv = net.createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const b = net.connect({
    port: (srv.address() as net.AddressInfo).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const a = await accepted;
  srv.close();
  return [a, b];
}
