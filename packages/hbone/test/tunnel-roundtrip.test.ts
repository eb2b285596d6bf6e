import type { IncomingHttpHeaders } from 'node:http2';
import { describe, expect, it, vi } from 'vitest';
import type { HboneServerOptions, HboneTunnel, TunnelHandler } from '../src/index.js';
import { payload, readAll, sha256 } from './fixtures.js';
import { CLIENT_ID, SERVER_ID, useHarness } from './harness.js';

const h = useHarness();

/** Echo: accept, pipe the tunnel back into itself (half-close carried: END_STREAM -> end()). */
const echo: TunnelHandler = (t) => {
  const tunnel = t.accept();
  tunnel.on('error', () => {}); // the client side may go first in teardown
  tunnel.pipe(tunnel);
};

async function start(handler: TunnelHandler, extra: Partial<HboneServerOptions> = {}) {
  const { srv, port } = await h.server_(handler, extra);
  const session = await h.connect(port);
  return { srv, port, session };
}

describe('tunnel round trip', () => {
  it('carries 1 MiB both ways byte for byte, with half-close', async () => {
    const { session } = await start(echo);
    const tunnel = await session.open({ authority: '10.0.0.2:8080' });
    const data = payload(1024 * 1024);
    const back = readAll(tunnel);
    tunnel.end(data);
    const got = await back;
    expect(sha256(got)).toBe(sha256(data));
    expect(tunnel.bytesSent).toBe(data.length);
    expect(tunnel.bytesReceived).toBe(data.length);
  });

  it('runs 10 concurrent tunnels on one connection', async () => {
    const { session, srv } = await start(echo);
    const results = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const tunnel = await session.open({ authority: `10.0.0.${i + 1}:80` });
        const data = payload(256 * 1024);
        const back = readAll(tunnel);
        tunnel.end(data);
        return sha256(await back) === sha256(data);
      }),
    );
    expect(results.every(Boolean)).toBe(true);
    expect(srv.connections).toBe(1);
    expect(session.totalStreams).toBe(10);
  });

  it('keeps reading after our END_STREAM (half-close), and ends when the peer ends', async () => {
    let serverSide: { tunnel: HboneTunnel; read: Promise<Buffer> } | undefined;
    const accepted = new Promise<void>((resolve) => {
      void start((t) => {
        const tunnel = t.accept();
        tunnel.on('error', () => {}); // the client side may go first in teardown
        serverSide = { tunnel, read: readAll(tunnel) };
        resolve();
      }).then(async ({ session }) => {
        opened = await session.open({ authority: '10.0.0.2:80' });
      });
    });
    let opened: HboneTunnel | undefined;
    await accepted;
    await vi.waitFor(() => expect(opened).toBeDefined());
    const tunnel = opened!;
    const reply = readAll(tunnel);
    tunnel.end('request');
    expect((await serverSide!.read).toString()).toBe('request');
    // The server writes after having read our EOF: the other direction still flows.
    serverSide!.tunnel.write('late ');
    await new Promise((r) => setTimeout(r, 20));
    serverSide!.tunnel.end('reply');
    expect((await reply).toString()).toBe('late reply');
  });

  it('sends only :method and :authority pseudo-headers, then baggage, forwarded, traceparent in order', async () => {
    const seen = new Promise<{ headers: IncomingHttpHeaders; raw: string[] }>((resolve) => {
      void start((t) => {
        resolve({ headers: t.headers, raw: [...t.rawHeaders] });
        t.reject(503);
      }).then(async ({ session }) => {
        await session
          .open({
            authority: '[fd00::2]:8080',
            baggage: {
              clusterName: 'east',
              namespace: 'payments',
              workloadKind: 'deployment',
              workloadName: 'cart',
            },
            forwarded: { for: '10.0.0.9:4321' },
            forwardedNetwork: 'network-west',
          })
          .catch(() => {});
      });
    });
    const { headers, raw } = await seen;
    const order = raw.filter((_, i) => i % 2 === 0);
    expect(order).toEqual([
      ':method',
      ':authority',
      'baggage',
      'forwarded',
      'traceparent',
      'x-forwarded-network',
    ]);
    expect(headers[':method']).toBe('CONNECT');
    expect(headers[':authority']).toBe('[fd00::2]:8080');
    expect(headers.baggage).toBe(
      'k8s.cluster.name=east,k8s.namespace.name=payments,k8s.deployment.name=cart',
    );
    expect(headers.forwarded).toBe('for="10.0.0.9:4321"');
    expect(headers.traceparent).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    expect(headers['x-forwarded-network']).toBe('network-west');
  });

  it('exposes the verified peer identity on both sides and TLS 1.3 with ALPN h2', async () => {
    const peer = new Promise<string>((resolve) => {
      void start((t) => {
        resolve(t.peerIdentity.toString());
        t.reject(503);
      }).then(async ({ session }) => {
        expect(session.peerIdentity.toString()).toBe(SERVER_ID);
        expect(session.tls.protocol).toBe('TLSv1.3');
        expect(session.tls.alpn).toBe('h2');
        expect(['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256']).toContain(session.tls.cipher);
        await session.open({ authority: '10.0.0.1:1' }).catch(() => {});
      });
    });
    expect(await peer).toBe(CLIENT_ID);
  });

  it('answers 200 with :status alone (no date header, as ztunnel)', async () => {
    const { session } = await start(echo);
    const tunnel = await session.open({ authority: '10.0.0.2:80' });
    expect(Object.keys(tunnel.responseHeaders).filter((k) => typeof k === 'string')).toEqual([':status']);
    tunnel.end();
    await readAll(tunnel);
  });

  it('returns the destination baggage from the 200', async () => {
    const { session } = await start((t) => {
      const tunnel = t.accept({
        baggage: { namespace: 'payments', workloadKind: 'pod', workloadName: 'checkout' },
      });
      tunnel.on('error', () => {}); // the client side may go first in teardown
      tunnel.resume();
      tunnel.end();
    });
    const tunnel = await session.open({ authority: '10.0.0.2:80' });
    expect(tunnel.responseHeaders.baggage).toBe('k8s.namespace.name=payments,k8s.pod.name=checkout');
    tunnel.end();
    await readAll(tunnel);
  });

  it('counts active streams and reports idle', async () => {
    const { session } = await start(echo);
    const tunnel = await session.open({ authority: '10.0.0.2:80' });
    expect(session.activeStreams).toBe(1);
    const idle = new Promise((r) => session.once('idle', r));
    tunnel.end();
    await readAll(tunnel);
    await idle;
    expect(session.activeStreams).toBe(0);
  });
});
