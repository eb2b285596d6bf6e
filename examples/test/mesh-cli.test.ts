/**
 * `hbone proxy|gateway|waypoint --config F` through their `run(argv)` exports, with YAML files and
 * a CA directory on disk, on 127.61.6.0/24.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCa } from '@hbone/testkit';
import { afterEach, describe, expect, it } from 'vitest';
import { run as runGateway } from '../src/cli-mesh/gateway.js';
import { run as runProxy } from '../src/cli-mesh/proxy.js';
import { run as runWaypoint } from '../src/cli-mesh/waypoint.js';
import { socks5Connect } from '../src/mesh/socks5.js';
import { echoApp, payload, roundTrip, sha256, Teardown, waitFor } from './mesh-fixture.js';

const B = '127.61.6';
const t = new Teardown();
afterEach(() => t.close());

const MESH = `
mesh:
  clusters: [{ name: c1, network: n1, trustDomain: cli.local }]
  workloads:
    - { name: cart, namespace: shop, serviceAccount: cart, ip: ${B}.10, node: node-1, cluster: c1 }
    - { name: stock, namespace: shop, serviceAccount: stock, ip: ${B}.20, node: node-1, cluster: c1 }
  services:
    - { name: stock, namespace: shop, vip: ${B}.120, ports: [{ port: 7070 }], endpoints: [stock], waypoint: wp }
  gateways:
    - { name: gw, network: n1, address: ${B}.5, identity: spiffe://cli.local/ns/istio-eastwest/sa/gw }
  waypoints:
    - { name: wp, network: n1, address: ${B}.6, identity: spiffe://cli.local/ns/shop/sa/wp }
credentials: { ca: ./ca }
`;

async function setup(): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'hbone-mesh-cli-'));
  t.defer(() => rmSync(dir, { recursive: true, force: true }));
  const ca = await TestCa.create('cli.local');
  await ca.writeFiles(join(dir, 'ca'));
  writeFileSync(
    join(dir, 'proxy.yaml'),
    `${MESH}proxy: { name: zt-1, node: node-1, address: ${B}.2, cluster: c1 }\n`,
  );
  writeFileSync(join(dir, 'gateway.yaml'), `${MESH}gateway: { name: gw, acceptTrustDomains: [cli.local] }\n`);
  writeFileSync(join(dir, 'waypoint.yaml'), `${MESH}waypoint: { name: wp, metricsPort: 15020 }\n`);
  return dir;
}

function start(run: typeof runProxy, file: string) {
  const ac = new AbortController();
  let out = '';
  let err = '';
  const done = run(['--config', file], {
    signal: ac.signal,
    stdout: (s) => {
      out += s;
    },
    stderr: (s) => {
      err += s;
    },
  });
  t.defer(() => {
    ac.abort();
    return done;
  });
  return { ac, done, out: () => out, err: () => err };
}

describe('hbone proxy / gateway / waypoint --config F', () => {
  it('starts each component from YAML, serves, logs JSON lines, and exits 0 when stopped', async () => {
    const dir = await setup();
    t.add(await echoApp(`${B}.20`, 7070));
    const proxy = start(runProxy, join(dir, 'proxy.yaml'));
    await waitFor(() => proxy.out().includes('ready'), 10_000, `proxy ready (${proxy.err()})`);
    expect(proxy.out()).toContain(`hbone proxy: zt-1 ready (node node-1, STRICT): socks5 ${B}.2:15080`);
    expect((await fetch(`http://${B}.2:15021/healthz/ready`)).status).toBe(200);
    const gw = start(runGateway, join(dir, 'gateway.yaml'));
    const wp = start(runWaypoint, join(dir, 'waypoint.yaml'));
    await waitFor(
      () => gw.out().includes('ready') && wp.out().includes('ready'),
      10_000,
      'gateway and waypoint',
    );
    expect(gw.out()).toContain(`hbone gateway: gw ready on ${B}.5:15008`);
    expect(wp.out()).toContain('for stock.shop.svc.cluster.local');
    // cart -> stock goes through the waypoint, which speaks HTTP: a plain TCP echo does not.
    // So talk to stock by its pod IP (no waypoint on that path).
    const sock = await socks5Connect({
      proxy: { host: `${B}.2`, port: 15080 },
      destination: { host: `${B}.20`, port: 7070 },
      localAddress: `${B}.10`,
    });
    t.defer(() => sock.destroy());
    const data = payload(20_000);
    expect(sha256(await roundTrip(sock, data))).toBe(sha256(data));
    await waitFor(
      () =>
        proxy
          .out()
          .split('\n')
          .filter((l) => l.includes('connection complete')).length === 2,
    );
    const lines = proxy
      .out()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines.map((l) => l.direction).sort()).toEqual(['inbound', 'outbound']);
    proxy.ac.abort();
    gw.ac.abort();
    wp.ac.abort();
    expect(await Promise.all([proxy.done, gw.done, wp.done])).toEqual([0, 0, 0]);
  });

  it('usage mistakes exit 2, configuration mistakes 1 with the field and line', async () => {
    const dir = await setup();
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, `${MESH}proxy: { name: zt-1, node: node-1, address: 0.0.0.0, cluster: c1 }\n`);
    const a = start(runProxy, bad);
    expect(await a.done).toBe(1);
    expect(a.err()).toBe(
      'hbone proxy: ERR_MESH_CONFIG: proxy.address: must be a specific address (never the wildcard)\n',
    );
    writeFileSync(bad, 'mesh: [unclosed\n');
    const b = start(runProxy, bad);
    expect(await b.done).toBe(1);
    expect(b.err()).toMatch(/^hbone proxy: ERR_MESH_CONFIG: .*bad\.yaml:\d+: invalid YAML/);
    const c = start(runGateway, join(dir, 'proxy.yaml'));
    expect(await c.done).toBe(1);
    expect(c.err()).toContain('configures a proxy, not a gateway');
    let err = '';
    expect(
      await runProxy([], {
        stderr: (s) => {
          err += s;
        },
      }),
    ).toBe(2);
    expect(err).toContain('--config FILE is required');
  });
});
