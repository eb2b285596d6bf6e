import { createFaultProxy } from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import {
  ConnectError,
  connect,
  HboneTimeoutError,
  IdentityMismatchError,
  InvalidOptionError,
  SessionClosedError,
  TlsHandshakeError,
} from '../src/index.js';
import { deadPort, identity } from './fixtures.js';
import { CLIENT_ID, SERVER_ID, useHarness } from './harness.js';

const h = useHarness();
const accept503 = (t: { reject(s: number): void }) => t.reject(503);

describe('dial failures are typed', () => {
  it('connection refused -> ConnectError with ECONNREFUSED', async () => {
    const port = await deadPort();
    const err = await h.connect(port).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConnectError);
    expect((err as ConnectError).syscallCode).toBe('ECONNREFUSED');
  });

  it('a silently dropped path -> HboneTimeoutError naming the phase', async () => {
    const { port } = await h.server_(accept503);
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port }, mode: 'blackhole' });
    h.defer(() => proxy.close());
    const err = await h.connect(proxy.port, { handshakeTimeoutMs: 200 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HboneTimeoutError);
    expect((err as HboneTimeoutError).phase).toMatch(/TLS handshake/);
  });

  it('options are validated at construction', async () => {
    await expect(
      connect({ host: '127.0.0.1', port: 1 }, { ...h.client.sources } as never),
    ).rejects.toBeInstanceOf(InvalidOptionError);
    await expect(
      connect(
        { host: '127.0.0.1', port: 1 },
        { ...h.client.sources, expectedIdentities: [], handshakeTimeoutMs: -1 },
      ),
    ).rejects.toBeInstanceOf(InvalidOptionError);
  });
});

describe('identity failures are identity errors, not network errors', () => {
  it('a server whose identity is not expected -> IdentityMismatchError', async () => {
    const { port } = await h.server_(accept503);
    const err = await h
      .connect(port, { expectedIdentities: ['spiffe://cluster.local/ns/default/sa/someone-else'] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(IdentityMismatchError);
    expect((err as IdentityMismatchError).responseFlag).toBe('IDENTITY_ERROR');
  });

  it('positive control: the expected identity connects', async () => {
    const { port } = await h.server_(accept503);
    const session = await h.connect(port, { expectedIdentities: [SERVER_ID] });
    expect(session.peerIdentity.toString()).toBe(SERVER_ID);
  });

  it('an empty expected-identity list authorises nobody', async () => {
    const { port } = await h.server_(accept503);
    await expect(h.connect(port, { expectedIdentities: [] })).rejects.toBeInstanceOf(IdentityMismatchError);
  });

  it('a client from another trust domain (other root) is refused by the server -> TlsHandshakeError', async () => {
    const { srv, port } = await h.server_(accept503);
    const rejected = new Promise((r) => srv.once('clientError', r));
    const foreign = await identity('spiffe://mesh.other/ns/default/sa/client', {});
    const err = await h
      .connect(port, { ...foreign.sources, bundleSource: h.client.sources.bundleSource })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TlsHandshakeError);
    expect((err as TlsHandshakeError).responseFlag).toBe('TLS_FAILURE');
    await rejected;
  });

  it('a server that accepts only one client identity refuses others', async () => {
    const { port } = await h.server_(accept503, {
      authorizer: (id) => id.toString() === 'spiffe://cluster.local/ns/x/sa/y',
    });
    await expect(h.connect(port)).rejects.toBeInstanceOf(TlsHandshakeError);
  });

  it('positive control: the same server accepting CLIENT_ID serves it', async () => {
    const { port } = await h.server_(accept503, { authorizer: (id) => id.toString() === CLIENT_ID });
    const s = await h.connect(port);
    expect(s.available).toBe(true);
  });
});

describe('a session that is gone takes no tunnels', () => {
  it('open() after destroy() -> SessionClosedError', async () => {
    const { port } = await h.server_(accept503);
    const session = await h.connect(port);
    session.destroy();
    await expect(session.open({ authority: '10.0.0.1:80' })).rejects.toBeInstanceOf(SessionClosedError);
  });

  it('a peer killed mid-stream errors the tunnel with SessionClosedError, not EOF', async () => {
    const { port } = await h.server_((t) => {
      t.accept()
        .on('error', () => {})
        .write('hello');
    });
    const proxy = await createFaultProxy({ target: { host: '127.0.0.1', port } });
    h.defer(() => proxy.close());
    const session = await h.connect(proxy.port);
    const tunnel = await session.open({ authority: '10.0.0.1:80' });
    const chunks: Buffer[] = [];
    tunnel.on('data', (c: Buffer) => chunks.push(c));
    const result = new Promise((resolve) => {
      tunnel.once('error', resolve);
      tunnel.once('end', () => resolve('eof'));
    });
    await new Promise((r) => setTimeout(r, 50));
    proxy.setMode('reset');
    const outcome = await result;
    expect(outcome).toBeInstanceOf(SessionClosedError);
    expect(Buffer.concat(chunks).toString()).toBe('hello');
  });
});
