/**
 * The small HTTP endpoints every mesh component serves (ztunnel's ports): readiness on :15021
 * (`/healthz/ready`: 200 once listening, 503 before and while draining), the config dump on
 * :15000 (`/config_dump`: JSON of what the component knows), and the HTTP listener helper the
 * metrics endpoint (:15020) uses too. Each server tracks its sockets so `close()` is prompt.
 */
import * as http from 'node:http';
import type { Socket } from 'node:net';

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

export interface HttpEndpoint {
  readonly host: string;
  readonly port: number;
  /** Idempotent; destroys kept-alive sockets. */
  close(): Promise<void>;
}

/** Listens on `host:port` (never the wildcard) with `handler`. */
export async function listenHttp(host: string, port: number, handler: Handler): Promise<HttpEndpoint> {
  const server = http.createServer({ keepAliveTimeout: 1000 }, handler);
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.removeListener('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  let closing: Promise<void> | undefined;
  return {
    host,
    port: bound,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      });
      return closing;
    },
  };
}

/** `/healthz/ready`: 200 "ready" when `ready()` says so, 503 otherwise. */
export function readinessHandler(ready: () => boolean): Handler {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz/ready') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /healthz/ready\n');
      return;
    }
    const ok = ready();
    res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(ok ? 'ready\n' : 'not ready\n');
  };
}

/** `/config_dump`: the JSON `dump()` returns. */
export function configDumpHandler(dump: () => unknown): Handler {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/config_dump') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /config_dump\n');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`${JSON.stringify(dump(), null, 2)}\n`);
  };
}
