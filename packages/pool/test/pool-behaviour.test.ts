import {
  ConnectError,
  H2_CODES,
  HboneTimeoutError,
  type HboneTunnel,
  SessionClosedError,
} from '@hbone/hbone';
import { X509Svid } from '@hbone/spiffe';
import { createFaultProxy } from '@hbone/testkit';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { PoolConfig } from '../src/index.js';
import {
  createPool,
  type HbonePool,
  InvalidPoolConfigError,
  NoStreamCapacityError,
  PoolClosedError,
  PoolQueueFullError,
} from '../src/index.js';
import {
  CLIENT_ID,
  ca,
  clientCredentials,
  deadPort,
  echo,
  keyFor,
  readText,
  sleep,
  startServer,
} from './fixtures.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
let creds: Awaited<ReturnType<typeof clientCredentials>>;
beforeAll(async () => {
  creds = await clientCredentials();
});

function pool(config: Partial<PoolConfig> = {}, clientOptions = {}): HbonePool {
  const p = createPool({ credentials: creds.credentials, config, clientOptions });
  cleanups.push(() => p.destroy());
  return p;
}

async function server(...args: Parameters<typeof startServer>) {
  const s = await startServer(...args);
  cleanups.push(() => s.srv.destroy());
  return s;
}

const quiet = (t: HboneTunnel): HboneTunnel => t.on('error', () => {});

describe('one dial per key', () => {
  it('100 concurrent opens to a fresh key make exactly one connection', async () => {
    const s = await server(1);
    const p = pool();
    const tunnels = await Promise.all(
      Array.from({ length: 100 }, (_, i) => p.open(keyFor(s), { authority: `10.0.0.${(i % 200) + 1}:80` })),
    );
    expect(tunnels).toHaveLength(100);
    expect(p.stats().dials).toBe(1);
    expect(s.accepted).toBe(1);
    for (const t of tunnels) t.destroy();
  });

  it('a failed dial fails every waiter promptly with the same typed error, and the next open dials again', async () => {
    const port = await deadPort();
    const p = pool({ backoffInitialMs: 10_000, backoffMaxMs: 10_000 });
    const key = keyFor({ port, id: 'spiffe://cluster.local/ns/default/sa/nobody' });
    const started = Date.now();
    const errors = await Promise.all(
      Array.from({ length: 50 }, () => p.open(key, { authority: '10.0.0.1:80' }).catch((e: unknown) => e)),
    );
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(errors.every((e) => e instanceof ConnectError)).toBe(true);
    expect(new Set(errors).size).toBe(1); // the very same error object
    expect(p.stats().dials).toBe(1);
    // One failure: no backoff yet, the next open dials again.
    await expect(p.open(key, { authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(ConnectError);
    expect(p.stats().dials).toBe(2);
    // Two consecutive failures: backing off, the next open fails fast without a dial.
    await expect(p.open(key, { authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(ConnectError);
    expect(p.stats().dials).toBe(2);
    expect(p.stats().dialFailures).toBe(2);
  });

  it('different keys (other destination identity, other source IP) get their own connections; the port does not', async () => {
    const s = await server(2);
    const p = pool();
    const a = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    const b = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:443' }));
    const c = quiet(await p.open({ ...keyFor(s), sourceIp: '127.0.0.2' }, { authority: '10.0.0.1:80' }));
    const d = quiet(
      await p.open(
        { ...keyFor(s), destinations: [s.id, 'spiffe://cluster.local/ns/x/sa/y'] },
        { authority: '10.0.0.1:80' },
      ),
    );
    expect(p.stats().dials).toBe(3);
    expect(s.accepted).toBe(3);
    for (const t of [a, b, c, d]) t.destroy();
  });
});

describe('stream limits', () => {
  it('dials a new connection when every connection of the key is full', async () => {
    const s = await server(3);
    const p = pool({ maxStreamsPerConnection: 10 });
    const tunnels = await Promise.all(
      Array.from({ length: 25 }, () => p.open(keyFor(s), { authority: '10.0.0.1:80' })),
    );
    expect(p.stats().liveConnections).toBe(3);
    expect(Math.max(...p.stats().perKey[0]!.connections.map((c) => c.active))).toBeLessThanOrEqual(10);
    for (const t of tunnels) t.destroy();
  });

  it("respects the peer's MAX_CONCURRENT_STREAMS = 1", async () => {
    const s = await server(4, echo, { maxConcurrentStreams: 1 });
    const p = pool();
    const tunnels = await Promise.all(
      Array.from({ length: 3 }, () => p.open(keyFor(s), { authority: '10.0.0.1:80' })),
    );
    expect(s.accepted).toBe(3);
    for (const t of tunnels) t.destroy();
  });

  it('fails with NoStreamCapacityError when the peer advertises MAX_CONCURRENT_STREAMS = 0', async () => {
    const s = await server(5, echo, { maxConcurrentStreams: 0 });
    const p = pool();
    await expect(p.open(keyFor(s), { authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(
      NoStreamCapacityError,
    );
  });

  it('queues beyond the per-key cap, serves the queue as tunnels close, and bounds the queue', async () => {
    const s = await server(6);
    const p = pool({ maxStreamsPerConnection: 2, maxConnectionsPerKey: 1, maxQueuedPerKey: 1 });
    const [a, b] = await Promise.all([
      p.open(keyFor(s), { authority: '10.0.0.1:80' }),
      p.open(keyFor(s), { authority: '10.0.0.1:80' }),
    ]);
    const queued = p.open(keyFor(s), { authority: '10.0.0.1:80' });
    await sleep(20);
    expect(p.stats().queued).toBe(1);
    await expect(p.open(keyFor(s), { authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(PoolQueueFullError);
    a!.destroy();
    const c = await queued;
    expect(p.stats().dials).toBe(1);
    b!.destroy();
    c.destroy();
  });

  it('a queued open times out with HboneTimeoutError', async () => {
    const s = await server(7);
    const p = pool({ maxStreamsPerConnection: 1, maxConnectionsPerKey: 1 });
    const a = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    await expect(p.open(keyFor(s), { authority: '10.0.0.1:80' }, { timeoutMs: 100 })).rejects.toBeInstanceOf(
      HboneTimeoutError,
    );
    expect(p.stats().queued).toBe(0);
    a.destroy();
  });
});

describe('unhealthy connections take no new tunnels', () => {
  it('after GOAWAY mid-traffic, live tunnels finish and new opens go on a new connection', async () => {
    const sessions: Array<{ goaway: (code: number, last: number) => void }> = [];
    const s = await server(8);
    s.srv.on('connection', (c: { session: { goaway: (code: number, last: number) => void } }) =>
      sessions.push(c.session),
    );
    const p = pool();
    const live = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
    sessions[0]!.goaway(H2_CODES.NO_ERROR, 2 ** 31 - 1);
    await sleep(50);
    const next = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    expect(s.accepted).toBe(2);
    // The old tunnel still works.
    const back = readText(live);
    live.end('still-alive');
    expect(await back).toBe('still-alive');
    next.destroy();
  });

  it('a connection that fails PING liveness is replaced', async () => {
    const s = await server(9, echo, { pingIntervalMs: 0 });
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: s.port } });
    cleanups.push(() => proxy.close());
    const p = pool({}, { pingIntervalMs: 50, pingTimeoutMs: 150 });
    const key = { ...keyFor(s), address: { host: '127.0.0.1', port: proxy.port } };
    quiet(await p.open(key, { authority: '10.0.0.1:80' }));
    proxy.setMode('blackhole');
    await sleep(400);
    proxy.setMode('pass');
    const t = quiet(await p.open(key, { authority: '10.0.0.1:80' }));
    expect(p.stats().dials).toBe(2);
    t.destroy();
  });

  it('a server killed mid-stream fails its tunnels and the next open redials', async () => {
    const s = await server(10);
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port: s.port } });
    cleanups.push(() => proxy.close());
    const p = pool();
    const key = { ...keyFor(s), address: { host: '127.0.0.1', port: proxy.port } };
    const t = await p.open(key, { authority: '10.0.0.1:80' });
    const failed = new Promise((r) => t.once('error', r));
    proxy.setMode('reset');
    expect(await failed).toBeInstanceOf(SessionClosedError);
    proxy.setMode('pass');
    await sleep(20);
    quiet(await p.open(key, { authority: '10.0.0.1:80' })).destroy();
    expect(p.stats().dials).toBe(2);
  });

  it('a tunnel refused with REFUSED_STREAM is retried once on another connection', async () => {
    let first = true;
    const s = await server(11, (t) => {
      if (first) {
        first = false;
        t.reset(H2_CODES.REFUSED_STREAM);
        return;
      }
      echo(t);
    });
    const p = pool();
    const t = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    expect(s.accepted).toBe(2);
    t.destroy();
  });
});

describe('eviction', () => {
  it('closes idle connections after idleTimeoutMs', async () => {
    const s = await server(12);
    const p = pool({ idleTimeoutMs: 100 });
    const t = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
    t.end();
    t.resume();
    await sleep(50);
    expect(p.stats().connections).toBe(1);
    await sleep(250);
    expect(p.stats().connections).toBe(0);
    expect(p.stats().evictions.idle).toBe(1);
    expect(s.srv.connections).toBe(0);
  });

  it('drains a connection at its maximum lifetime', async () => {
    const s = await server(13);
    const p = pool({ maxLifetimeMs: 100, lifetimeJitter: 0 });
    const t = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    await sleep(200);
    expect(p.stats().evictions.lifetime).toBe(1);
    const u = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    expect(p.stats().dials).toBe(2);
    t.destroy();
    u.destroy();
  });

  it('caps total connections by draining the least recently used', async () => {
    const servers = await Promise.all([14, 15, 16].map((i) => server(i)));
    const p = pool({ maxConnections: 2 });
    for (const s of servers) {
      const t = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
      t.end();
      t.resume();
      await new Promise((r) => t.once('close', r));
    }
    await sleep(50);
    expect(p.stats().evictions.lru).toBe(1);
    expect(p.stats().liveConnections).toBe(2);
  });

  it('after a certificate rotation, new tunnels go on new connections and old ones drain', async () => {
    const s = await server(17);
    const p = pool();
    const old = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
    const minted = await (await ca()).mint(CLIENT_ID);
    creds.source.setX509Svid(X509Svid.parse(minted.certChainPem, minted.keyPem));
    const fresh = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    expect(s.accepted).toBe(2);
    expect(p.stats().evictions.rotation).toBe(1);
    // The old connection still carries its tunnel.
    const back = readText(old);
    old.end('old-conn');
    expect(await back).toBe('old-conn');
    fresh.destroy();
  });
});

describe('close and destroy', () => {
  it('close() drains; opens after it fail with PoolClosedError; nothing stays open', async () => {
    const s = await server(18);
    const p = pool();
    const t = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
    const closing = p.close();
    await expect(p.open(keyFor(s), { authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(PoolClosedError);
    const back = readText(t);
    t.end('drained');
    expect(await back).toBe('drained');
    await closing;
    expect(p.stats().connections).toBe(0);
    expect(p.close()).toBe(closing);
  });

  it('destroy() fails live tunnels at once', async () => {
    const s = await server(19);
    const p = pool();
    const t = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
    const failed = new Promise((r) => t.once('error', r));
    await p.destroy();
    expect(await failed).toBeInstanceOf(SessionClosedError);
    expect(p.stats().connections).toBe(0);
  });

  it('rejects bad configuration at construction', () => {
    expect(() =>
      createPool({ credentials: creds.credentials, config: { maxStreamsPerConnection: 0 } }),
    ).toThrow(InvalidPoolConfigError);
    expect(() => createPool({ credentials: creds.credentials, config: { nope: 1 } as never })).toThrow(
      InvalidPoolConfigError,
    );
    expect(() => createPool({} as never)).toThrow(InvalidPoolConfigError);
  });
});

describe('stats and events', () => {
  it('counts dials, reuses and opens, and emits dial/connect events', async () => {
    const s = await server(20);
    const p = pool();
    const events: string[] = [];
    p.on('dial', () => events.push('dial'));
    p.on('connect', () => events.push('connect'));
    const a = await p.open(keyFor(s), { authority: '10.0.0.1:80' });
    a.end();
    a.resume();
    await new Promise((r) => a.once('close', r));
    const b = quiet(await p.open(keyFor(s), { authority: '10.0.0.1:80' }));
    const st = p.stats();
    expect(st).toMatchObject({ opens: 2, dials: 1, reuses: 1, keys: 1, connections: 1, activeTunnels: 1 });
    expect(events).toEqual(['dial', 'connect']);
    b.destroy();
  });
});
