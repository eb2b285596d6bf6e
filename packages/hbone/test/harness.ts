import {
  FrameFlag,
  FrameType,
  peerCredentials,
  RawH2Client,
  type RawH2ClientOptions,
  type RawH2Peer,
  RawH2Server,
  type RawH2ServerOptions,
  type TestCa,
} from '@hbone/testkit';
import { afterEach, beforeAll, expect } from 'vitest';
import type { TunnelRequest } from '../src/connect-request.js';
import {
  connect,
  createServer,
  type HboneClientOptions,
  type HboneClientSession,
  type HboneServer,
  type HboneServerOptions,
  type TunnelHandler,
} from '../src/index.js';
import { caFor, type Identity, identity, readAll } from './fixtures.js';

export const SERVER_ID = 'spiffe://cluster.local/ns/default/sa/server';
export const CLIENT_ID = 'spiffe://cluster.local/ns/default/sa/client';

/** Accepts every tunnel and echoes it. */
export const echo: TunnelHandler = (t) => {
  const tunnel = t.accept();
  tunnel.on('error', () => {});
  tunnel.pipe(tunnel);
};

/** The echo handler, counting its calls. */
export function countingEcho(): { handler: TunnelHandler; calls: () => number } {
  let calls = 0;
  return {
    calls: () => calls,
    handler: (t) => {
      calls++;
      return echo(t);
    },
  };
}

/** Opens a tunnel to 10.0.0.1:80 (plus `request`) on an echo server: `text` comes back. */
export async function expectEcho(
  session: HboneClientSession,
  text: string,
  request: Partial<TunnelRequest> = {},
): Promise<void> {
  const tunnel = await session.open({ authority: '10.0.0.1:80', ...request });
  const back = readAll(tunnel);
  tunnel.end(text);
  expect((await back).toString()).toBe(text);
}

/** For a hostile server: runs `script` with the stream id of the first CONNECT it receives. */
export function onConnect(script: (peer: RawH2Peer, id: number) => void): (peer: RawH2Peer) => void {
  return (peer) => {
    void peer
      .waitFor((f) => f.type === FrameType.HEADERS, 5_000)
      .then((f) => script(peer, f.streamId))
      .catch(() => {});
  };
}

/** Tracks what a test opened so afterEach closes all of it, in reverse order. */
export class Harness {
  readonly cleanups: Array<() => unknown> = [];
  server!: Identity;
  client!: Identity;
  /** The cluster.local CA that signed both. */
  ca!: TestCa;

  async init(): Promise<void> {
    this.server = await identity(SERVER_ID);
    this.client = await identity(CLIENT_ID);
    this.ca = await caFor('cluster.local');
  }

  /** A raw HTTP/2 client with our test client's certificate, as soon as TLS is up. */
  async rawClient(port: number, extra: Partial<RawH2ClientOptions> = {}): Promise<RawH2Client> {
    const c = await RawH2Client.connect({
      port,
      tls: peerCredentials(this.client.minted, this.ca),
      ...extra,
    });
    this.defer(() => c.destroy());
    return c;
  }

  /** A raw HTTP/2 client with our test client's certificate, past the SETTINGS exchange. */
  async attacker(port: number, extra: Partial<RawH2ClientOptions> = {}): Promise<RawH2Client> {
    const c = await this.rawClient(port, extra);
    await c.waitFor(
      (f) => f.type === FrameType.SETTINGS && (f.flags & FrameFlag.ACK) !== 0,
      5_000,
      'SETTINGS ACK',
    );
    return c;
  }

  /** A hostile server with our server's SVID; `onConnection` scripts what it does. Returns its port. */
  async hostileServer(
    onConnection: (peer: RawH2Peer) => void,
    opts: Partial<RawH2ServerOptions> = {},
  ): Promise<number> {
    const server = new RawH2Server({
      tls: { ...peerCredentials(this.server.minted, this.ca), ca: this.ca.bundlePem },
      ...opts,
      onConnection,
    });
    const { port } = await server.listen();
    this.defer(() => server.close());
    return port;
  }

  /**
   * A well-behaved client still gets a tunnel and its bytes back. `request` adds to the CONNECT
   * (to 10.0.0.1:80). Returns how long that took, in ms.
   */
  async expectStillServes(port: number, request: Partial<TunnelRequest> = {}): Promise<number> {
    const started = Date.now();
    await expectEcho(await this.connect(port), 'still serving', request);
    return Date.now() - started;
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

/** The test file's Harness: its identities made before the tests, what each test opened closed after it. */
export function useHarness(): Harness {
  const h = new Harness();
  beforeAll(() => h.init());
  afterEach(() => h.cleanup());
  return h;
}
