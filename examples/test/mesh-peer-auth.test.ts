/**
 * STRICT vs PERMISSIVE peer authentication on :15006, and a policy change re-checking open
 * connections, on 127.61.3.0/24.
 */
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { payload, readAll, roundTrip, sha256, startSeed, Teardown, waitFor } from './mesh-fixture.js';

const BASE = '127.61.3';
const t = new Teardown();
afterEach(() => t.close());

/** A plaintext client; a reset may come before or after 'connect' (readAll then rejects). */
function plaintextTo(host: string, port: number, localAddress: string): net.Socket {
  const s = net.connect({ host, port, localAddress, allowHalfOpen: true });
  t.defer(() => s.destroy());
  return s;
}

describe('peer authentication on the plaintext port :15006', () => {
  it('STRICT: plaintext is refused and logged as denied', async () => {
    const s = await startSeed(BASE, t, { start: ['east2', 'apps'] });
    const sock = plaintextTo(s.ip.inventory, 15006, s.ip.spare(1));
    const got = await readAll(sock).catch((e: Error) => e);
    expect(got instanceof Error ? got.message : got.length).toMatch(/ECONNRESET|^0$/);
    await waitFor(() => s.east2.accessLog.entries.length === 1);
    expect(s.east2.accessLog.entries[0]).toMatchObject({
      direction: 'inbound',
      'src.addr': expect.stringContaining(s.ip.spare(1)),
      error: expect.stringContaining('peer authentication is STRICT'),
    });
    expect(s.apps.inventory.peers).toEqual([]);
    expect(
      s.east2.metrics.value('istio_tcp_connections_failed_total', {
        reporter: 'destination',
        response_flags: 'DENY',
      }),
    ).toBe(1);
  });

  it('PERMISSIVE: plaintext is delivered, and the access log has no source identity', async () => {
    const s = await startSeed(BASE, t, { start: ['east2', 'apps'], peerAuthentication: 'PERMISSIVE' });
    const sock = plaintextTo(s.ip.inventory, 15006, s.ip.spare(1));
    const data = payload(50_000);
    expect(sha256(await roundTrip(sock, data))).toBe(sha256(data));
    await waitFor(() => s.east2.accessLog.entries.length === 1);
    const line = s.east2.accessLog.entries[0]!;
    expect(line['src.addr']).toContain(s.ip.spare(1));
    expect(line['src.identity']).toBeUndefined();
    expect(line).toMatchObject({
      'dst.addr': `${s.ip.inventory}:7070`,
      bytes_sent: data.length,
      bytes_recv: data.length,
    });
    expect(line.error).toBeUndefined();
    expect(
      s.east2.metrics.value('istio_tcp_connections_opened_total', { connection_security_policy: 'none' }),
    ).toBe(1);
  });

  it('PERMISSIVE still applies authorisation: a principal rule cannot match a connection without identity', async () => {
    const s = await startSeed(BASE, t, {
      start: ['east2', 'apps'],
      peerAuthentication: 'PERMISSIVE',
      policies: [
        {
          name: 'inventory-from-cart',
          namespace: 'payments',
          selector: { matchLabels: { app: 'inventory' } },
          action: 'ALLOW',
          rules: [{ from: [{ principals: ['east.local/ns/payments/sa/cart'] }] }],
        },
      ],
    });
    const sock = plaintextTo(s.ip.inventory, 15006, s.ip.spare(1));
    await readAll(sock).catch(() => undefined);
    await waitFor(() => s.east2.accessLog.entries.length === 1);
    expect(s.east2.accessLog.entries[0]?.error).toContain('allow policies exist, but none allowed');
  });
});

describe('a policy change re-checks open connections', () => {
  it('closes the connections a new DENY policy matches, and keeps the others', async () => {
    const s = await startSeed(BASE, t, { start: ['east', 'east2', 'apps'] });
    const o = await s.east.openOutbound({ src: s.ip.cart, dst: `${s.ip.inventoryVip}:7070` });
    o.stream.on('error', () => {});
    o.stream.write('before');
    await new Promise<void>((r) => o.stream.once('data', () => r()));
    expect(s.east2.setPolicies([])).toBe(0);
    const closed = s.east2.setPolicies([
      {
        name: 'deny-cart',
        namespace: 'payments',
        selector: { matchLabels: { app: 'inventory' } },
        targetRef: undefined,
        action: 'DENY',
        rules: [{ from: [{ principals: ['east.local/ns/payments/sa/cart'] }] }],
      },
    ]);
    expect(closed).toBe(1);
    await o.done;
    await waitFor(() => s.east2.accessLog.entries.length === 1);
    expect(s.east2.accessLog.entries[0]?.error).toBe(
      'connection closed due to policy rejection after a policy change: explicitly denied by: payments/deny-cart',
    );
    const err = await s.east
      .connectOutbound({ src: s.ip.cart, dst: `${s.ip.inventoryVip}:7070` })
      .catch((e: Error) => e);
    expect((err as Error).message).toContain('denied by authorisation policy (401, DENY)');
  });
});
