/** `runMeshDemo` end to end on 127.61.5.0/24: exits 0 and prints a table read from the hops. */
import { expect, it } from 'vitest';
import { runMeshDemo } from '../src/mesh/mesh-demo.js';

it('runs the two-cluster path and the waypoint request, and fills the hop table from what each hop saw', async () => {
  let text = '';
  const code = await runMeshDemo({
    base: '127.61.5',
    out: (s) => {
      text += s;
    },
  });
  expect(text).toContain('mesh demo: OK');
  expect(code).toBe(0);
  const row = (component: string): string => text.split('\n').find((l) => l.includes(`| ${component}`)) ?? '';
  expect(row('ztunnel-east ')).toContain('double HBONE via eastwest-west');
  expect(row('ztunnel-east ')).toContain('spiffe://west.local/ns/payments/sa/checkout');
  expect(row('WAN / load balancer')).toContain('spiffe://east.local/ns/payments/sa/cart');
  expect(row('east-west gateway')).toContain('127.61.5.30:15008');
  expect(row('ztunnel-west')).toContain('HBONE (inner, from network network-east)');
  expect(row('checkout pod')).toContain('source 127.61.5.4:');
  expect(text).toContain('GET /reviews/1 -> 200, DELETE /reviews/1 -> 403');
  expect(text).toContain('baggage seen at hop 4 (ztunnel-west): k8s.cluster.name=cluster-east');
  expect(text).toContain("never the application's: yes");
});
