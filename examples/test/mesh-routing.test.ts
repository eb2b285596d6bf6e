/** The outbound decision, as pure routing over a configuration. No sockets. */
import { describe, expect, it } from 'vitest';
import { NoRouteError } from '../src/mesh/errors.js';
import { Router } from '../src/mesh/routing.js';
import { addresses, seedMesh } from './mesh-fixture.js';

const ip = addresses('127.61.8');
const router = new Router(seedMesh('127.61.8'));
const east = { from: 'ztunnel-east', network: 'network-east' };

describe('routing', () => {
  it('same network: HBONE to the workload :15008, authority pod IP:target port', () => {
    expect(router.route({ host: ip.inventoryVip, port: 7070 }, east)).toMatchObject({
      kind: 'hbone',
      address: { host: ip.inventory, port: 15008 },
      authority: `${ip.inventory}:7070`,
      identities: ['spiffe://east.local/ns/payments/sa/inventory'],
    });
  });
  it('other network: double HBONE through the gateway, hostname authority', () => {
    expect(router.route({ host: 'checkout.payments.svc.cluster.local', port: 8080 }, east)).toMatchObject({
      kind: 'double-hbone',
      address: { host: ip.gateway, port: 15008 },
      authority: 'checkout.payments.svc.cluster.local:8080',
      identities: ['spiffe://west.local/ns/payments/sa/checkout'],
    });
  });
  it('a pod IP on another network goes through its service', () => {
    expect(router.route({ host: ip.checkout, port: 8080 }, east).kind).toBe('double-hbone');
  });
  it('TCP-only: plaintext; waypoint: to the waypoint unless routing as it', () => {
    expect(router.route({ host: ip.legacyVip, port: 5432 }, east)).toMatchObject({
      kind: 'plaintext',
      address: { host: ip.legacy, port: 5432 },
    });
    expect(router.route({ host: ip.reviewsVip, port: 9080 }, east)).toMatchObject({
      kind: 'waypoint',
      authority: `${ip.reviewsVip}:9080`,
    });
    expect(
      router.route({ host: ip.reviewsVip, port: 9080 }, { ...east, viaWaypoint: 'reviews-waypoint' }).kind,
    ).toBe('hbone');
  });
  it.each([
    [{ host: ip.spare(1), port: 80 }, 'unknown address'],
    [{ host: 'nope.payments.svc.cluster.local', port: 80 }, 'unknown hostname'],
    [{ host: ip.inventoryVip, port: 9999 }, 'has no port 9999'],
  ])('no route: %o', (dst, why) => {
    expect(() => router.route(dst, east)).toThrow(NoRouteError);
    expect(() => router.route(dst, east)).toThrow(why);
  });
  it('no gateway for the network: no route', () => {
    const r = new Router({ ...seedMesh('127.61.8'), gateways: [] });
    expect(() => r.route({ host: ip.checkoutVip, port: 8080 }, east)).toThrow(
      'no east-west gateway is configured for network network-west',
    );
  });
});
