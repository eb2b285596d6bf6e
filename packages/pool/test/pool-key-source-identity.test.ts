/**
 * [POOL-1] (docs/spec/hbone.md 10.1), the source-identity part: a node proxy dials as many
 * workloads, and a connection authenticated as one workload must never carry another's
 * tunnels. Two source SVIDs, one destination server on 127.0.0.1; the server records which
 * client identity each connection and each tunnel arrived with.
 */
import type { HboneTunnel, TunnelHandler } from '@hbone/hbone';
import type { SpiffeId } from '@hbone/spiffe';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Credentials, createPool, type HbonePool } from '../src/index.js';
import { echo, keyFor, readText, sourceFor, startServer, TD } from './fixtures.js';

const SOURCE_A = `spiffe://${TD}/ns/shop/sa/cart`;
const SOURCE_B = `spiffe://${TD}/ns/shop/sa/payments`;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** Credentials per source identity, as a node proxy holds them. */
let credentialsFor: (source: SpiffeId) => Credentials;
beforeAll(async () => {
  const sources = new Map([
    [SOURCE_A, await sourceFor(SOURCE_A)],
    [SOURCE_B, await sourceFor(SOURCE_B)],
  ]);
  credentialsFor = (source) => {
    const s = sources.get(source.toString());
    if (!s) throw new Error(`no credentials for ${source}`);
    return { svidSource: s, bundleSource: s };
  };
});

function pool(): HbonePool {
  const p = createPool({ credentials: credentialsFor });
  cleanups.push(() => p.destroy());
  return p;
}

/** A server that records the client identity of every connection and of every tunnel. */
async function recordingServer() {
  const tunnels: Array<{ peer: string; authority: string }> = [];
  const handler: TunnelHandler = (t) => {
    tunnels.push({ peer: String(t.peerIdentity), authority: t.authorityString });
    return echo(t);
  };
  const s = await startServer(1, handler);
  cleanups.push(() => s.srv.destroy());
  const connections: string[] = [];
  s.srv.on('connection', (c: { peerIdentity: unknown }) => connections.push(String(c.peerIdentity)));
  return { s, tunnels, connections };
}

/** Which source a tunnel was opened for, by its authority: 10.0.1.x for A, 10.0.2.x for B. */
const authorityFor = (source: string, i: number): string => `10.0.${source === SOURCE_A ? 1 : 2}.${i + 1}:80`;
const sourceOf = (authority: string): string => (authority.startsWith('10.0.1.') ? SOURCE_A : SOURCE_B);

const quiet = (t: HboneTunnel): HboneTunnel => t.on('error', () => {});

describe('the pool keys connections by source identity [POOL-1]', () => {
  it('two opens to the same destination with different source SVIDs never share a connection', async () => {
    const { s, tunnels, connections } = await recordingServer();
    const p = pool();
    const a = quiet(
      await p.open({ ...keyFor(s), source: SOURCE_A }, { authority: authorityFor(SOURCE_A, 0) }),
    );
    const b = quiet(
      await p.open({ ...keyFor(s), source: SOURCE_B }, { authority: authorityFor(SOURCE_B, 0) }),
    );
    expect(p.stats().dials).toBe(2);
    expect(s.accepted).toBe(2);
    expect(connections.sort()).toEqual([SOURCE_A, SOURCE_B]);
    // Each tunnel arrived on a connection authenticated as its own source.
    expect(tunnels).toEqual([
      { peer: SOURCE_A, authority: authorityFor(SOURCE_A, 0) },
      { peer: SOURCE_B, authority: authorityFor(SOURCE_B, 0) },
    ]);
    // The same source again does reuse its connection: the pool pools, only not across sources.
    const a2 = quiet(
      await p.open({ ...keyFor(s), source: SOURCE_A }, { authority: authorityFor(SOURCE_A, 1) }),
    );
    expect(p.stats().dials).toBe(2);
    expect(p.stats().reuses).toBe(1);
    expect(s.accepted).toBe(2);
    expect(tunnels[2]).toEqual({ peer: SOURCE_A, authority: authorityFor(SOURCE_A, 1) });
    for (const t of [a, b, a2]) t.destroy();
  });

  it('interleaved concurrent opens for two sources: every tunnel reaches the server as its own source', async () => {
    const { s, tunnels, connections } = await recordingServer();
    const p = pool();
    const opens = Array.from({ length: 40 }, (_, i) => {
      const source = i % 2 === 0 ? SOURCE_A : SOURCE_B;
      return p.open({ ...keyFor(s), source }, { authority: authorityFor(source, i) });
    });
    const opened = (await Promise.all(opens)).map(quiet);
    // The tunnels work end to end, too.
    const texts = await Promise.all(
      opened.map((t, i) => {
        const back = readText(t);
        t.end(`tunnel ${i}`);
        return back;
      }),
    );
    expect(texts).toEqual(opened.map((_, i) => `tunnel ${i}`));
    expect(tunnels).toHaveLength(40);
    for (const t of tunnels) expect(t.peer, t.authority).toBe(sourceOf(t.authority));
    // One connection per source: one dial per key, however many opens race.
    expect(p.stats().dials).toBe(2);
    expect(connections.sort()).toEqual([SOURCE_A, SOURCE_B]);
  });
});
