import { createFaultProxy } from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import { SessionClosedError } from '../src/index.js';
import { useHarness } from './harness.js';

const h = useHarness();

describe('PING liveness', () => {
  it('tears down a connection whose peer stops answering PINGs', async () => {
    const { port } = await h.server_((t) => void t.accept().on('error', () => {}), { pingIntervalMs: 0 });
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port } });
    h.defer(() => proxy.close());
    const session = await h.connect(proxy.port, { pingIntervalMs: 50, pingTimeoutMs: 150 });
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    const tunnelOutcome = new Promise((r) => tunnel.once('error', r));
    const unhealthy = new Promise((r) => session.once('unhealthy', r));
    proxy.setMode('blackhole');
    expect(await unhealthy).toBeInstanceOf(SessionClosedError);
    expect(await tunnelOutcome).toBeInstanceOf(SessionClosedError);
    expect(session.available).toBe(false);
  });

  it('positive control: a live peer keeps the connection through many PING rounds', async () => {
    const { port } = await h.server_((t) => void t.accept().on('error', () => {}));
    const session = await h.connect(port, { pingIntervalMs: 20, pingTimeoutMs: 100 });
    await new Promise((r) => setTimeout(r, 300));
    expect(session.available).toBe(true);
  });
});
