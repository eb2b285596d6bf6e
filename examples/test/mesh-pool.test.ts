/**
 * 100 concurrent client connections through a node proxy to one destination ride ONE HBONE
 * connection (the pool at work), visible in both proxies' metrics; on 127.61.4.0/24.
 */
import type * as net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { socks5Connect } from '../src/mesh/socks5.js';
import { payload, roundTrip, sha256, startSeed, Teardown, waitFor } from './mesh-fixture.js';

const BASE = '127.61.4';
const t = new Teardown();
afterEach(() => t.close());

it('100 SOCKS5 clients of one pod to one service share one HBONE connection', async () => {
  const s = await startSeed(BASE, t, { start: ['east', 'east2', 'apps'] });
  const socks = { host: s.ip.ztunnelEast, port: s.east.port('socks5')! };
  const clients: net.Socket[] = await Promise.all(
    Array.from({ length: 100 }, () =>
      socks5Connect({
        proxy: socks,
        destination: { host: s.ip.inventoryVip, port: 7070 },
        localAddress: s.ip.cart,
      }),
    ),
  );
  for (const c of clients) t.defer(() => c.destroy());
  // All 100 open at once, on one connection.
  expect(s.east.pool.stats().activeTunnels).toBe(100);
  expect(s.east.metrics.value('hbone_pool_connections')).toBe(1);
  expect(s.east2.inboundHboneConnections).toBe(1);
  const data = clients.map(() => payload(8 * 1024));
  const back = await Promise.all(clients.map((c, i) => roundTrip(c, data[i]!)));
  expect(back.map(sha256)).toEqual(data.map(sha256));
  await waitFor(() => s.east2.metrics.value('istio_tcp_connections_closed_total') === 100);
  const scrape = await (await fetch(`http://${s.ip.ztunnelEast}:${s.east.port('metrics')}/metrics`)).text();
  expect(scrape).toContain('hbone_pool_dials_total{proxy="ztunnel-east"} 1');
  expect(scrape).toContain('hbone_pool_connections{proxy="ztunnel-east"} 1');
  expect(scrape).toMatch(
    /istio_tcp_connections_opened_total\{reporter="source",source_workload="cart".*\} 100/,
  );
  expect(s.east2.metrics.value('istio_tcp_connections_opened_total', { reporter: 'destination' })).toBe(100);
  expect(s.east2.metrics.value('hbone_inbound_connections')).toBe(1);
  expect(s.east.pool.stats().dials).toBe(1);
});
