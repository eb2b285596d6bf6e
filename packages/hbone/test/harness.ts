import { FrameFlag, FrameType, peerCredentials, RawH2Client } from '@hbone/testkit';
import {
  connect,
  createServer,
  type HboneClientOptions,
  type HboneClientSession,
  type HboneServer,
  type HboneServerOptions,
  type TunnelHandler,
} from '../src/index.js';
import { caFor, type Identity, identity } from './fixtures.js';

export const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/server';
export const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/client';

/** Tracks what a test opened so afterEach closes all of it, in reverse order. */
export class Harness {
  readonly cleanups: Array<() => unknown> = [];
  server!: Identity;
  client!: Identity;

  async init(): Promise<void> {
    this.server = await identity(SERVER_ID);
    this.client = await identity(CLIENT_ID);
  }

  /** A raw HTTP/2 client with our test client's certificate, past the SETTINGS exchange. */
  async attacker(port: number): Promise<RawH2Client> {
    const c = await RawH2Client.connect({
      port,
      tls: peerCredentials(this.client.minted, await caFor('cluster.local')),
    });
    this.defer(() => c.destroy());
    await c.waitFor(
      (f) => f.type === FrameType.SETTINGS && (f.flags & FrameFlag.ACK) !== 0,
      5_000,
      'SETTINGS ACK',
    );
    return c;
  }

  defer(fn: () => unknown): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const c of this.cleanups.splice(0).reverse()) await c();
  }

  async server_(
    handler: TunnelHandler,
    extra: Partial<HboneServerOptions> = {},
  ): Promise<{ srv: HboneServer; port: number }> {
    const srv = createServer({ ...this.server.sources, handler, ...extra });
    const { port } = await srv.listen(0, '127.0.0.1');
    this.defer(() => srv.destroy());
    return { srv, port };
  }

  async connect(
    port: number,
    extra: Partial<HboneClientOptions> = {},
    host = '127.0.0.1',
  ): Promise<HboneClientSession> {
    const session = await connect({ host, port }, {
      ...this.client.sources,
      expectedIdentities: [SERVER_ID],
      ...extra,
    } as HboneClientOptions);
    this.defer(() => session.destroy());
    return session;
  }
}
