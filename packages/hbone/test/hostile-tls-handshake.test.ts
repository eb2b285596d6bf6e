/**
 * Peers that never get as far as a CONNECT: slowloris handshakes, the wrong TLS version, no or
 * a foreign client certificate, the wrong ALPN, bytes that are not TLS at all, and a TCP FIN
 * right after the preface. Each is refused (a TLS alert or a close) and reported as a typed
 * 'clientError', within the handshake deadline, while a good client is served.
 */
import { randomBytes } from 'node:crypto';
import * as net from 'node:net';
import {
  CLIENT_PREFACE,
  captureClientHello,
  FrameFlag,
  FrameType,
  memoryWatch,
  peerCredentials,
  reportAttack,
  settingsFrame,
  tcpProbe,
  tlsProbe,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  H2HandshakeError,
  type HboneServer,
  type HboneTunnel,
  SessionClosedError,
  TlsHandshakeError,
  type TunnelHandler,
} from '../src/index.js';
import { caFor, identity } from './fixtures.js';
import { echo, expectEcho, useHarness } from './harness.js';

const h = useHarness();

const HANDSHAKE_MS = 300;

async function server(
  handler: TunnelHandler = echo,
): Promise<{ srv: HboneServer; port: number; clientErrors: Error[] }> {
  const { srv, port } = await h.server_(handler, { handshakeTimeoutMs: HANDSHAKE_MS });
  const clientErrors: Error[] = [];
  srv.on('clientError', (err: Error) => clientErrors.push(err));
  return { srv, port, clientErrors };
}

describe('slowloris: a handshake that never finishes is cut at handshakeTimeoutMs', () => {
  it('TCP connected, nothing sent', async () => {
    const { port, clientErrors } = await server();
    const r = await tcpProbe({ port, timeoutMs: 5_000 });
    expect(r.closedByPeer).toBe(true);
    expect(r.afterMs).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50);
    expect(r.afterMs).toBeLessThan(HANDSHAKE_MS + 1_500);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    expect(clientErrors[0]!.message).toMatch(/timeout/i);
    reportAttack('slowloris: nothing sent', { closedAfterMs: r.afterMs, handshakeTimeoutMs: HANDSHAKE_MS });
    await h.expectStillServes(port);
  });

  it('half a ClientHello, then silence', async () => {
    const { port, clientErrors } = await server();
    const hello = await captureClientHello(peerCredentials(h.client.minted, h.ca));
    const r = await tcpProbe({ port, send: hello.subarray(0, hello.length >> 1), timeoutMs: 5_000 });
    expect(r.closedByPeer).toBe(true);
    expect(r.afterMs).toBeLessThan(HANDSHAKE_MS + 1_500);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await h.expectStillServes(port);
  });

  it('a ClientHello dribbled one byte every 20 ms (it would take seconds)', async () => {
    const { port } = await server();
    const hello = await captureClientHello(peerCredentials(h.client.minted, h.ca));
    let timer: NodeJS.Timeout | undefined;
    let sent = 0;
    const r = await tcpProbe({
      port,
      timeoutMs: 5_000,
      send: (socket) => {
        timer = setInterval(() => {
          if (sent >= hello.length || socket.destroyed) return clearInterval(timer);
          socket.write(hello.subarray(sent, sent + 1));
          sent++;
        }, 20);
      },
    });
    clearInterval(timer);
    expect(r.closedByPeer).toBe(true);
    expect(r.afterMs).toBeLessThan(HANDSHAKE_MS + 1_500);
    expect(sent).toBeLessThan(hello.length);
    reportAttack('slowloris: ClientHello dribbled', {
      closedAfterMs: r.afterMs,
      bytesSent: sent,
      of: hello.length,
    });
  });

  it('200 slowloris connections at once: all cut, a good client served meanwhile, memory bounded', async () => {
    const { srv, port } = await server();
    const mem = memoryWatch();
    const probes = Array.from({ length: 200 }, () => tcpProbe({ port, timeoutMs: 10_000 }));
    await h.expectStillServes(port);
    const results = await Promise.all(probes);
    expect(results.every((r) => r.closedByPeer)).toBe(true);
    const slowest = Math.max(...results.map((r) => r.afterMs));
    expect(slowest).toBeLessThan(HANDSHAKE_MS + 3_000);
    const growth = mem();
    reportAttack('200 slowloris connections', { slowestCloseMs: slowest, ...growth });
    expect(growth.heapUsedMiB).toBeLessThan(64);
    expect(srv.connections).toBe(1); // the good client's
  });

  it('TLS done, but no HTTP/2 preface: cut at the same deadline', async () => {
    const { srv, port, clientErrors } = await server();
    const r = await tlsProbe({
      port,
      tls: { ...peerCredentials(h.client.minted, h.ca), ALPNProtocols: ['h2'] },
      timeoutMs: 5_000,
    });
    expect(r.secure).toBe(true);
    expect(r.closedByPeer).toBe(true);
    expect(r.afterMs).toBeLessThan(HANDSHAKE_MS + 1_500);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(H2HandshakeError);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    reportAttack('TLS done, no HTTP/2 preface', { closedAfterMs: r.afterMs });
    await h.expectStillServes(port);
  });

  it('the preface without its SETTINGS frame: cut too', async () => {
    const { port, clientErrors } = await server();
    // ackSettings off: a SETTINGS ACK would itself be a frame, and a protocol error before SETTINGS.
    const c = await h.rawClient(port, { preface: false, ackSettings: false });
    c.send(CLIENT_PREFACE);
    const closed = await c.waitForClose(5_000);
    expect(closed?.byPeer).toBe(true);
    expect(closed!.afterMs).toBeLessThan(HANDSHAKE_MS + 1_500);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(H2HandshakeError);
  });

  it('positive control: our client, idle past the deadline, keeps its connection', async () => {
    const { srv, port, clientErrors } = await server();
    const session = await h.connect(port);
    await new Promise((r) => setTimeout(r, HANDSHAKE_MS * 3));
    expect(session.state).toBe('open');
    await expectEcho(session, 'after the deadline');
    expect(srv.connections).toBe(1);
    expect(clientErrors).toEqual([]);
  });

  it('positive control: a raw client that sends its SETTINGS in time keeps its connection past the deadline', async () => {
    const { srv, port, clientErrors } = await server();
    const c = await h.rawClient(port);
    await c.waitFor((f) => f.type === FrameType.SETTINGS && (f.flags & FrameFlag.ACK) !== 0);
    await new Promise((r) => setTimeout(r, HANDSHAKE_MS * 3));
    expect(c.isClosed).toBe(false);
    expect(srv.connections).toBe(1);
    expect(clientErrors).toEqual([]);
  });
});

describe('TLS clients the server must refuse', () => {
  it('TLS 1.2 only: alert protocol_version', async () => {
    const { port, clientErrors } = await server();
    const r = await tlsProbe({
      port,
      tls: { ...peerCredentials(h.client.minted, h.ca), ALPNProtocols: ['h2'], maxVersion: 'TLSv1.2' },
    });
    expect(r.secure).toBe(false);
    expect(r.error?.message).toMatch(/protocol version|alert number 70/);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await h.expectStillServes(port);
  });

  it('no client certificate: alert certificate_required (TLS 1.3: after the client thinks it is done)', async () => {
    const { srv, port, clientErrors } = await server();
    const r = await tlsProbe({ port, tls: { ca: h.ca.bundlePem, ALPNProtocols: ['h2'] } });
    expect(r.error?.message).toMatch(/certificate required|alert number 116/);
    expect(r.closedByPeer).toBe(true);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });

  it('a certificate from an unknown CA: refused during the handshake', async () => {
    const { srv, port, clientErrors } = await server();
    const stranger = await identity('spiffe://elsewhere.example/ns/default/sa/client');
    const strangerCa = await caFor('elsewhere.example');
    const r = await tlsProbe({
      port,
      tls: { ...peerCredentials(stranger.minted, strangerCa), ALPNProtocols: ['h2'] },
    });
    expect(r.closedByPeer).toBe(true);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
  });

  it('ALPN http/1.1 only: alert no_application_protocol', async () => {
    const { port, clientErrors } = await server();
    const r = await tlsProbe({
      port,
      tls: { ...peerCredentials(h.client.minted, h.ca), ALPNProtocols: ['http/1.1'] },
    });
    expect(r.secure).toBe(false);
    expect(r.error?.message).toMatch(/no application protocol|alert number 120/);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await h.expectStillServes(port);
  });

  it('no ALPN at all: the handshake completes, then the server closes with H2HandshakeError', async () => {
    const { srv, port, clientErrors } = await server();
    const r = await tlsProbe({ port, tls: peerCredentials(h.client.minted, h.ca) });
    expect(r.secure).toBe(true);
    expect(r.alpn).toBe(false);
    expect(r.closedByPeer).toBe(true);
    expect(r.bytesReceived).toBe(0); // not even SETTINGS
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(H2HandshakeError);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
  });
});

describe('bytes that are not TLS', () => {
  const cases: Array<[string, Buffer]> = [
    ['64 KiB of random bytes', randomBytes(64 * 1024)],
    ['a plaintext HTTP/1.1 request', Buffer.from('GET / HTTP/1.1\r\nHost: 10.0.0.1\r\n\r\n')],
    ['a cleartext HTTP/2 preface (h2c)', Buffer.concat([CLIENT_PREFACE, settingsFrame()])],
    ['a TLS record header announcing 16 MB', Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01])],
  ];
  it.each(cases)('%s: closed at once, TlsHandshakeError', async (_name, bytes) => {
    const { port, clientErrors } = await server();
    const r = await tcpProbe({ port, send: bytes, timeoutMs: 5_000 });
    expect(r.closedByPeer).toBe(true);
    expect(r.afterMs).toBeLessThan(HANDSHAKE_MS + 1_500);
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await h.expectStillServes(port);
  });
});

describe('half-open TCP: a FIN right after the preface', () => {
  for (const how of ['a bare TCP FIN', 'TLS close_notify and FIN'] as const) {
    it(`${how}: the server closes the connection`, async () => {
      const { srv, port } = await server();
      const c = await h.rawClient(port);
      await c.waitFor((f) => f.type === FrameType.SETTINGS && (f.flags & FrameFlag.ACK) !== 0);
      expect(srv.connections).toBe(1);
      if (how === 'a bare TCP FIN') c.tcp.end();
      else c.tlsSocket.end();
      const closed = await c.waitForClose(3_000);
      expect(closed?.byPeer).toBe(true);
      await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
      await h.expectStillServes(port);
    });
  }

  it('a FIN with a tunnel open: the tunnel fails with SessionClosedError, the connection is released', async () => {
    const tunnels: HboneTunnel[] = [];
    const errors: unknown[] = [];
    const { srv, port } = await server((t) => {
      const tunnel = t.accept();
      tunnel.on('error', (err) => errors.push(err));
      tunnels.push(tunnel);
      tunnel.pipe(tunnel);
    });
    const c = await h.rawClient(port);
    const id = c.connectRequest('10.0.0.1:80');
    expect(await c.outcome(id)).toMatchObject({ kind: 'response', status: 200 });
    c.data(id, 'half');
    await c.waitFor((f) => f.streamId === id && f.type === FrameType.DATA);
    c.tcp.end();
    await c.waitForClose(3_000);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await expect.poll(() => tunnels[0]?.destroyed).toBe(true);
    expect(errors[0]).toBeInstanceOf(SessionClosedError);
    await h.expectStillServes(port);
  });
});

describe('a peer that resets the TCP connection during the handshake', () => {
  it('RST after half a ClientHello: a clientError, nothing left behind', async () => {
    const { srv, port, clientErrors } = await server();
    const hello = await captureClientHello(peerCredentials(h.client.minted, h.ca));
    await new Promise<void>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => {
        s.write(hello.subarray(0, 100), () => setTimeout(() => s.resetAndDestroy(), 20));
      });
      s.on('error', () => {});
      s.on('close', () => resolve());
    });
    await expect.poll(() => clientErrors.length).toBe(1);
    expect(clientErrors[0]).toBeInstanceOf(TlsHandshakeError);
    await expect.poll(() => srv.connections, { timeout: 2_000 }).toBe(0);
    await h.expectStillServes(port);
  });
});
