/**
 * The server side of every hbone benchmark, in its own process (started by `lib/peer.ts` with
 * `--expose-gc`): raw mutual-TLS 1.3 servers for the baselines and HBONE servers built from the
 * package sources, driven over Node IPC. Nothing here writes to stdout.
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import {
  createServer,
  gatewayHandler,
  type HboneServer,
  INITIAL_CONNECTION_WINDOW_BYTES,
  type IncomingTunnel,
  MAX_SESSION_MEMORY_MB,
  SERVER_SETTINGS,
} from '../packages/hbone/src/index.js';
import { type Creds, rawTlsServerOptions, sourcesFor } from './lib/creds.js';
import { type Counts, type ListenSpec, type Request, replyToParent, settledMemory } from './lib/protocol.js';
import { serveEcho, serveSink } from './lib/traffic.js';

let creds: Creds | undefined;
const closers = new Map<number, () => Promise<void>>();
const held = new Set<Duplex>();
let connections = 0;

function need(): Creds {
  if (!creds) throw new Error('init first');
  return creds;
}

function holdOn(s: Duplex): void {
  held.add(s);
  s.on('error', () => {});
  s.once('close', () => held.delete(s));
}

/**
 * Bare node:http2 over raw mutual TLS, with HBONE's SETTINGS and windows but none of our code:
 * the reference that separates node:http2's own cost from the HBONE layer's.
 */
function bareH2(mode: 'sink' | 'echo'): http2.Http2Server {
  const h2 = http2.createServer({
    settings: { ...SERVER_SETTINGS },
    maxSessionMemory: MAX_SESSION_MEMORY_MB,
  });
  h2.on('session', (session) => {
    session.on('error', () => {});
    session.once('connect', () => session.setLocalWindowSize(INITIAL_CONNECTION_WINDOW_BYTES));
  });
  h2.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ':status': 200 }, { endStream: false });
    if (mode === 'sink') serveSink(stream);
    else serveEcho(stream);
  });
  return h2;
}

async function listenTls(spec: Extract<ListenSpec, { proto: 'tls' | 'h2' }>): Promise<number> {
  const c = need();
  const h2 = spec.proto === 'h2' ? bareH2(spec.mode) : undefined;
  const server = tls.createServer(rawTlsServerOptions(c, c[spec.who ?? 'server']), (socket) => {
    if (h2) {
      socket.setNoDelay(true);
      h2.emit('connection', socket);
      return;
    }
    socket.setNoDelay(true);
    connections++;
    socket.once('close', () => connections--);
    switch (spec.mode) {
      case 'sink':
        serveSink(socket);
        break;
      case 'echo':
        serveEcho(socket);
        break;
      case 'hello':
        // The client learns that the server finished the handshake (and verified it).
        socket.on('error', () => {});
        socket.write(Buffer.from([0x48]));
        break;
      case 'hold':
        holdOn(socket);
        break;
    }
  });
  server.on('tlsClientError', () => {});
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  const sockets = new Set<tls.TLSSocket>();
  server.on('secureConnection', (s: tls.TLSSocket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  closers.set(port, async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  });
  return port;
}

function hboneHandler(spec: Extract<ListenSpec, { proto: 'hbone' }>) {
  if (spec.mode === 'gateway') {
    const port = spec.routePort;
    return gatewayHandler({ route: () => ({ host: '127.0.0.1', port }) });
  }
  return (t: IncomingTunnel): void => {
    const tunnel = t.accept();
    switch (spec.mode) {
      case 'sink':
        serveSink(tunnel);
        break;
      case 'echo':
        serveEcho(tunnel);
        break;
      case 'accept':
      case 'hold':
        holdOn(tunnel);
        break;
    }
  };
}

async function listenHbone(spec: Extract<ListenSpec, { proto: 'hbone' }>): Promise<number> {
  const c = need();
  const server: HboneServer = createServer({
    ...sourcesFor(c, c[spec.who ?? 'server']),
    handler: hboneHandler(spec),
    ...('bufferWrites' in spec && spec.bufferWrites !== undefined ? { bufferWrites: spec.bufferWrites } : {}),
  });
  server.on('clientError', () => {});
  server.on('connection', () => connections++);
  server.on('connectionClosed', () => connections--);
  const { port } = await server.listen(0, '127.0.0.1');
  closers.set(port, () => server.destroy());
  return port;
}

async function handle(req: Request): Promise<unknown> {
  switch (req.cmd) {
    case 'init':
      creds = req.creds;
      return null;
    case 'listen':
      return req.spec.proto === 'hbone' ? listenHbone(req.spec) : listenTls(req.spec);
    case 'close': {
      const close = closers.get(req.port);
      closers.delete(req.port);
      await close?.();
      return null;
    }
    case 'memory':
      return settledMemory();
    case 'cpu':
      return process.cpuUsage();
    case 'counts':
      return { connections, tunnels: held.size } satisfies Counts;
    case 'exit':
      for (const close of closers.values()) await close();
      setImmediate(() => process.exit(0));
      return null;
  }
}

process.on('message', (req: Request) => {
  handle(req).then(
    (value) => replyToParent({ id: req.id, ok: true, value }),
    (err: unknown) => replyToParent({ id: req.id, ok: false, error: String((err as Error)?.stack ?? err) }),
  );
});
process.on('disconnect', () => process.exit(0));
replyToParent({ id: 0, ok: true, value: 'ready' });
