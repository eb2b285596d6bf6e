/** The YAML schema and its validation: typed errors naming the field or line. No sockets. */
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfigYaml, validateConfig } from '../src/mesh/config.js';
import { demoMeshYaml } from '../src/mesh/mesh-demo.js';
import { seedMeshObject } from './mesh-fixture.js';

const mesh = seedMeshObject('127.61.7');
const proxy = { name: 'zt', node: 'node-east-1', address: '127.61.7.2', cluster: 'cluster-east' };

function error(input: unknown): ConfigError {
  try {
    validateConfig(input);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return err as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('config', () => {
  it('derives identities, networks and defaults', () => {
    const c = validateConfig({ mesh, proxy });
    if (c.kind !== 'proxy') throw new Error('kind');
    const cart = c.mesh.workloads.find((w) => w.name === 'cart')!;
    expect(cart).toMatchObject({
      identity: 'spiffe://east.local/ns/payments/sa/cart',
      network: 'network-east',
      protocol: 'HBONE',
      hbonePort: 15008,
      inboundPort: 15006,
    });
    expect(c.mesh.services[0]?.hostname).toBe('inventory.payments.svc.cluster.local');
    expect(c.proxy.ports).toEqual({
      outbound: 15001,
      socks5: 15080,
      metrics: 15020,
      readiness: 15021,
      admin: 15000,
    });
    expect(c.proxy.network).toBe('network-east');
  });

  it('parses the demo YAML', () => {
    const c = parseConfigYaml(
      `mesh:\n${demoMeshYaml('127.61.7').replace(/^/gm, '  ')}\nwaypoint: { name: reviews-waypoint }\n`,
    );
    expect(c.kind).toBe('waypoint');
    expect(c.mesh.policies.map((p) => p.name)).toEqual(['checkout-from-cart', 'reviews-read-only']);
  });

  it.each([
    [{ mesh, proxy: { ...proxy, address: '0.0.0.0' } }, 'proxy.address', 'never the wildcard'],
    [{ mesh, proxy: { ...proxy, cluster: 'nope' } }, 'proxy.cluster', 'unknown cluster "nope"'],
    [{ mesh, proxy: { ...proxy, ports: { socks5: 70000 } } }, 'proxy.ports.socks5', 'port number'],
    [{ mesh, proxy: { ...proxy, colour: 'red' } }, 'proxy', 'unknown field "colour"'],
    [{ mesh }, '', 'exactly one of proxy, gateway, waypoint'],
    [{ mesh, gateway: { name: 'eastwest-west' } }, 'gateway.acceptTrustDomains', 'list the trust domains'],
    [
      {
        mesh: {
          ...mesh,
          services: [
            { name: 's', namespace: 'n', vip: '127.61.7.99', ports: [{ port: 1 }], endpoints: ['ghost'] },
          ],
        },
        proxy,
      },
      'mesh.services[0].endpoints[0]',
      'unknown workload "n/ghost"',
    ],
    [
      {
        mesh: {
          ...mesh,
          gateways: [{ name: 'g', network: 'n', address: '127.61.7.5', identity: 'http://x' }],
        },
        proxy,
      },
      'mesh.gateways[0].identity',
      'not a SPIFFE ID',
    ],
  ])('rejects %#: %s', (input, path, message) => {
    const e = error(input);
    expect(e.code).toBe('ERR_MESH_CONFIG');
    expect(e.path).toBe(path);
    expect(e.message).toContain(message);
  });

  it('names the line of a YAML syntax error', () => {
    expect(() => parseConfigYaml('mesh:\n  clusters: [\n', 'f.yaml')).toThrow(/^f\.yaml:\d+: invalid YAML/);
  });
});
