/**
 * `pnpm demo` (examples/src/demo.ts) as a real process: it exits 0 within its time bound and
 * prints the table of what each side observed, with values that can only come from a live run.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Cli, killAll } from './cli-harness.js';

afterEach(killAll);

describe('pnpm demo', { timeout: 120_000 }, () => {
  it('exits 0 and prints what the client and the server observed', async () => {
    const demo = new Cli('examples/src/demo.ts', [], { stdin: '' });
    const exit = await demo.exit(60_000);
    const out = demo.stdoutText;
    expect(demo.stderr).toBe('');
    expect(exit.code).toBe(0);

    const row = (name: string): string[] => {
      const line = out.split('\n').find((l) => l.startsWith(`${name}  `));
      expect(line, `row "${name}" in:\n${out}`).toBeDefined();
      return line!.slice(name.length).trim().split(/ {2,}/);
    };
    expect(row('our identity')).toEqual([
      'spiffe://demo.example/ns/demo/sa/client',
      'spiffe://demo.example/ns/demo/sa/server',
    ]);
    // Each side verified the other: the peers are the crossed identities.
    expect(row('peer identity (verified)')).toEqual([
      'spiffe://demo.example/ns/demo/sa/server',
      'spiffe://demo.example/ns/demo/sa/client',
    ]);
    expect(row('TLS version')).toEqual(['TLSv1.3', 'TLSv1.3']);
    expect(row('ALPN')).toEqual(['h2', 'h2']);
    const [clientCipher, serverCipher] = row('cipher');
    expect(clientCipher).toMatch(/^TLS_AES_(256_GCM_SHA384|128_GCM_SHA256)$/);
    expect(serverCipher).toBe(clientCipher);

    // The echo service's port is ephemeral: the authority both sides show must be the same one.
    const [sent, received] = row('CONNECT :authority');
    const port = /^127\.0\.0\.1:(\d+) \(sent\)$/.exec(sent!)?.[1];
    expect(port).toBeDefined();
    expect(received).toBe(`127.0.0.1:${port} (received)`);
    expect(out).toContain(`TCP echo service on 127.0.0.1:${port}`);

    // The client's port on the server side is the connection's, not a constant.
    expect(row('connection')[1]).toMatch(/^127\.0\.0\.1:\d+ <- 127\.0\.0\.1:\d+$/);
    // The traceparent is random per run; the server's trace id is the one the client sent.
    const [tp, traceId] = row('traceparent');
    expect(tp).toMatch(/^00-([0-9a-f]{32})-[0-9a-f]{16}-00$/);
    expect(tp!.slice(3, 35)).toBe(traceId);

    expect(row('baggage')).toEqual([
      'k8s.namespace.name=demo,k8s.deployment.name=client,service.name=client',
      'namespace demo, deployment client, service client',
    ]);
    expect(row('CONNECT answer')).toEqual(['200', '200']);
    expect(row('bytes sent')).toEqual(['1048576 into the tunnel', '1048576 back into the tunnel']);
    const hashes = out.match(/sha256:[0-9a-f]{16}/g) ?? [];
    expect(hashes.length).toBeGreaterThanOrEqual(3);
    expect(new Set(hashes).size).toBe(1);
    expect(out).toMatch(/^OK: 1048576 bytes went through HBONE/m);
  });
});
