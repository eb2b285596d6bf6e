// Two node peers sending bulk both ways once wedged a connection for good (node stops reading
// while its write is pending); the server's write-buffered socket (write-buffered-socket.ts) fixes it.
import { createHash, randomBytes } from 'node:crypto';
import { connect, createServer, type HboneClientSession, type HboneServer } from '@hbone/hbone';
import { X509Bundle, X509Svid } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';
import { afterEach, expect, it } from 'vitest';

let server: HboneServer | undefined;
let session: HboneClientSession | undefined;
afterEach(async () => {
  session?.destroy();
  await server?.destroy();
});

it('10 concurrent echo tunnels of 1 MiB on one connection all complete', async () => {
  const ca = await TestCa.create('example.org');
  const bundle = X509Bundle.fromPem('example.org', ca.bundlePem);
  const s = await ca.mint('spiffe://example.org/ns/default/sa/server');
  const c = await ca.mint('spiffe://example.org/ns/default/sa/client');
  server = createServer({
    svidSource: X509Svid.parse(s.certChainPem, s.keyPem),
    bundleSource: bundle,
    handler: (t) => {
      const tunnel = t.accept();
      tunnel.on('error', () => {}); // torn down in afterEach
      tunnel.pipe(tunnel); // echo, with half-close
    },
  });
  const { port } = await server.listen(0, '127.0.0.1');
  session = await connect(
    { host: '127.0.0.1', port },
    {
      svidSource: X509Svid.parse(c.certChainPem, c.keyPem),
      bundleSource: bundle,
      expectedIdentities: ['spiffe://example.org/ns/default/sa/server'],
    },
  );
  const sess = session;
  const tunnels = await Promise.all(
    Array.from({ length: 10 }, () => sess.open({ authority: '127.0.0.1:9' })),
  );
  const results = tunnels.map((tunnel) => {
    const data = randomBytes(1 << 20);
    const hash = createHash('sha256');
    const done = new Promise<string>((resolve, reject) => {
      tunnel.on('data', (d: Buffer) => hash.update(d));
      tunnel.on('end', () => resolve(hash.digest('hex')));
      tunnel.on('error', reject);
    });
    done.catch(() => {}); // the session is destroyed under a stuck tunnel in afterEach
    tunnel.end(data);
    return { want: createHash('sha256').update(data).digest('hex'), done };
  });
  const timeout = new Promise<'stuck'>((r) => setTimeout(() => r('stuck'), 10_000));
  const got = await Promise.race([Promise.all(results.map((r) => r.done)), timeout]);
  // With bufferWrites: false this is 'stuck': nothing comes back until PING liveness fires.
  expect(got).toEqual(results.map((r) => r.want));
}, 20_000);
