import { describe, expect, it } from 'vitest';
import { type HboneTunnel, SessionClosedError } from '../src/index.js';
import { readAll } from './fixtures.js';
import { useHarness } from './harness.js';

const h = useHarness();

describe('graceful drain (GOAWAY)', () => {
  it('lets live tunnels finish, refuses new ones, then closes', async () => {
    const serverTunnels: HboneTunnel[] = [];
    const { srv, port } = await h.server_(
      (t) => {
        const tunnel = t.accept();
        tunnel.on('error', () => {}); // the client side may go first in teardown
        serverTunnels.push(tunnel);
        tunnel.pipe(tunnel);
      },
      { drainDeadlineMs: 5_000 },
    );
    const session = await h.connect(port);
    const live = await Promise.all([1, 2, 3].map((i) => session.open({ authority: `10.0.0.${i}:80` })));
    const goaway = new Promise((r) => session.once('goaway', r));
    const closed = srv.close();
    await goaway;
    expect(session.available).toBe(false);
    await expect(session.open({ authority: '10.0.0.9:80' })).rejects.toBeInstanceOf(SessionClosedError);
    // Live tunnels still carry bytes after GOAWAY.
    const echoed = await Promise.all(
      live.map(async (t, i) => {
        const back = readAll(t);
        t.end(`tunnel-${i}`);
        return (await back).toString();
      }),
    );
    expect(echoed).toEqual(['tunnel-0', 'tunnel-1', 'tunnel-2']);
    await closed;
    expect(srv.connections).toBe(0);
  });

  it('destroys connections whose tunnels outlive the drain deadline', async () => {
    const { srv, port } = await h.server_((t) => void t.accept().on('error', () => {}), {
      drainDeadlineMs: 100,
    });
    const session = await h.connect(port);
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    const outcome = new Promise((resolve) => {
      tunnel.once('error', resolve);
      tunnel.once('close', () => resolve('closed'));
    });
    const started = Date.now();
    await srv.close();
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(await outcome).toBeInstanceOf(SessionClosedError);
  });

  it('close() is idempotent', async () => {
    const { srv } = await h.server_((t) => t.reject(503));
    const a = srv.close();
    const b = srv.close();
    expect(a).toBe(b);
    await a;
  });
});
