/**
 * A waypoint (the fifth seed's server-side L7 proxy): HBONE in with its own identity, the
 * CONNECT's authority naming a service it serves (`vip:port`), HTTP/1.1 requests read inside the
 * tunnel (node's HTTP parser, fed the tunnel as its connection), the service's L7 policies
 * (`targetRef: Service`) applied on method and path by the caller's principal (a denial is
 * Envoy's `403 RBAC: access denied`), then each allowed request sent on over HBONE to one of
 * the service's endpoints, as the waypoint's own identity (`Connection: close`, one tunnel per
 * request, the HBONE connection pooled).
 */
import * as http from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer, type HboneServer, type HboneTunnel, type IncomingTunnel } from '@hbone/hbone';
import { SpiffeId } from '@hbone/spiffe';
import { AccessLog } from './access-log.js';
import { configDumpHandler, type HttpEndpoint, listenHttp } from './admin.js';
import { evaluate, policiesForService } from './authorization.js';
import type {
  MeshConfig,
  PolicyConfig,
  ServiceConfig,
  WaypointConfig,
  WaypointSection,
  WorkloadConfig,
} from './config.js';
import { HboneListener } from './hbone-listener.js';
import { Observations } from './hop-observation.js';
import { Metrics, metricsHandler, TcpMetrics } from './metrics.js';
import { createProxyPool, type OutboundDeps, openOutbound, type SessionFacts } from './outbound.js';
import { Router } from './routing.js';
import { splitHostPort } from './tcp.js';
import type { IdentitySource } from './workload-identities.js';

export interface WaypointOptions {
  readonly mesh: MeshConfig;
  readonly waypoint: WaypointSection;
  readonly identities: IdentitySource;
  readonly accessLogWrite?: (line: string) => void;
}

/** One decision of the L7 filter, for tests and the hop table. */
export interface L7Decision {
  readonly principal: string;
  readonly method: string;
  readonly path: string;
  readonly service: string;
  readonly allowed: boolean;
  readonly reason: string;
  /** The status the client got. */
  readonly status: number;
}

interface TunnelContext {
  readonly incoming: IncomingTunnel;
  readonly service: ServiceConfig;
  readonly port: number;
  readonly srcAddr: string;
}

const HOP_BY_HOP = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'upgrade',
  'te',
  'trailer',
];

export class Waypoint {
  readonly name: string;
  readonly config: WaypointConfig;
  readonly section: WaypointSection;
  readonly accessLog: AccessLog;
  readonly metrics = new Metrics();
  readonly tcp: TcpMetrics;
  readonly observations = new Observations();
  readonly router: Router;
  readonly decisions: L7Decision[] = [];
  readonly #identities: IdentitySource;
  readonly #facts = new Map<string, SessionFacts>();
  readonly #pool;
  readonly #http = http.createServer({ keepAlive: true });
  readonly #contexts = new WeakMap<Duplex, TunnelContext>();
  readonly #tunnels = new Set<HboneTunnel>();
  readonly #endpoints: HttpEndpoint[] = [];
  #policies: readonly PolicyConfig[];
  #server: HboneServer | undefined;
  #listener: HboneListener | undefined;
  #closing: Promise<void> | undefined;

  private constructor(opts: WaypointOptions) {
    const cfg = opts.mesh.waypoints.find((w) => w.name === opts.waypoint.name);
    if (!cfg) throw new Error(`no waypoint ${opts.waypoint.name} in the mesh configuration`);
    this.name = cfg.name;
    this.config = cfg;
    this.section = opts.waypoint;
    this.router = new Router(opts.mesh);
    this.#policies = opts.mesh.policies;
    this.#identities = opts.identities;
    this.accessLog = new AccessLog({
      component: cfg.name,
      ...(opts.accessLogWrite ? { write: opts.accessLogWrite } : {}),
    });
    this.tcp = new TcpMetrics(this.metrics);
    this.#pool = createProxyPool({
      identities: opts.identities,
      timeouts: opts.waypoint.timeouts,
      idleTimeoutMs: 15_000,
      gateways: () => this.router.mesh.gateways,
      facts: this.#facts,
    });
    this.#http.on('request', (req, res) => this.#onRequest(req, res));
  }

  static async start(opts: WaypointOptions): Promise<Waypoint> {
    const w = new Waypoint(opts);
    try {
      await w.#start();
    } catch (err) {
      await w.close();
      throw err;
    }
    return w;
  }

  /** Replaces the policies (the L7 ones, targeting services, are the ones that matter here). */
  setPolicies(policies: readonly PolicyConfig[]): void {
    this.#policies = policies;
  }

  /** The waypoint as a workload: the identity and address it originates HBONE with. */
  #asWorkload(): WorkloadConfig {
    const id = SpiffeId.parse(this.config.identity);
    const istio = id.istio();
    const cluster =
      this.router.mesh.clusters.find(
        (c) => c.network === this.config.network && c.trustDomain === id.trustDomain.name,
      ) ?? this.router.mesh.clusters.find((c) => c.network === this.config.network);
    return {
      name: this.name,
      namespace: istio?.namespace ?? 'istio-system',
      serviceAccount: istio?.serviceAccount ?? this.name,
      ip: this.config.address,
      node: this.name,
      cluster: cluster?.name ?? 'unknown',
      network: this.config.network,
      trustDomain: id.trustDomain.name,
      identity: this.config.identity,
      locality: undefined,
      protocol: 'HBONE',
      labels: { 'gateway.networking.k8s.io/gateway-name': this.name },
      workloadKind: 'deployment',
      hbonePort: this.config.port,
      inboundPort: this.config.port,
      appPort: undefined,
    };
  }

  async #start(): Promise<void> {
    await this.#identities.prepare([this.config.identity]);
    const accept = new Set(
      this.section.acceptTrustDomains ?? this.router.mesh.clusters.map((c) => c.trustDomain),
    );
    const server = createServer({
      ...this.#identities.credentials(this.config.identity),
      authorizer: (id) => accept.has(id.trustDomain.name),
      handler: (t) => this.#onTunnel(t),
      handshakeTimeoutMs: this.section.timeouts.handshakeMs,
    });
    this.#server = server;
    this.#listener = await HboneListener.listen({
      host: this.config.address,
      port: this.config.port,
      server,
    });
    if (this.section.metricsPort !== null) {
      this.#endpoints.push(
        await listenHttp(this.config.address, this.section.metricsPort, metricsHandler(this.metrics)),
      );
    }
    if (this.section.adminPort !== null) {
      this.#endpoints.push(
        await listenHttp(
          this.config.address,
          this.section.adminPort,
          configDumpHandler(() => ({
            waypoint: this.config,
            certificates: this.#identities.held(),
            services: this.router.mesh.services.filter((s) => s.waypoint === this.name),
            policies: this.#policies.filter((p) => p.targetRef !== undefined),
            pool: this.#pool.stats(),
          })),
        ),
      );
    }
  }

  get port(): number {
    return this.#listener?.port ?? this.config.port;
  }

  #onTunnel(t: IncomingTunnel): void {
    const a = t.authority;
    const svc =
      a.kind === 'hostname' ? this.router.serviceByHostname(a.host) : this.router.serviceByVip(a.host);
    if (!svc || svc.waypoint !== this.name || !svc.ports.some((p) => p.port === a.port)) {
      t.reject(503);
      this.accessLog.record({
        direction: 'inbound',
        src: { identity: t.peerIdentity.toString() },
        dst: { addr: t.authorityString, identity: this.config.identity },
        bytesSent: 0,
        bytesRecv: 0,
        durationMs: 0,
        error: `${t.authorityString} is not a service this waypoint serves`,
      });
      return;
    }
    let srcAddr = `${t.connection.remoteAddress}:${t.connection.remotePort}`;
    try {
      srcAddr = t.forwarded()[0]?.for ?? srcAddr;
    } catch {
      // ignored, as ztunnel ignores unreadable headers
    }
    const tunnel = t.accept();
    this.#tunnels.add(tunnel);
    tunnel.once('close', () => this.#tunnels.delete(tunnel));
    tunnel.on('error', () => {});
    this.#contexts.set(tunnel, { incoming: t, service: svc, port: a.port, srcAddr });
    // node's HTTP server takes any Duplex as a connection: the tunnel's bytes are HTTP/1.1.
    this.#http.emit('connection', tunnel);
  }

  #onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const ctx = this.#contexts.get(req.socket as Duplex);
    if (!ctx) {
      res.writeHead(500).end();
      return;
    }
    const peer = ctx.incoming.peerIdentity;
    const method = req.method ?? 'GET';
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const decision = evaluate(
      policiesForService(this.#policies, ctx.service),
      { srcIdentity: peer, srcIp: splitHostPort(ctx.srcAddr).host, dstPort: ctx.port, method, path },
      'L7',
    );
    const note = (status: number, reqBytes: number, resBytes: number, error?: string): void => {
      this.decisions.push({
        principal: peer.toString(),
        method,
        path,
        service: ctx.service.hostname,
        allowed: decision.allowed,
        reason: decision.reason,
        status,
      });
      this.observations.add({
        component: this.name,
        role: 'waypoint',
        protocolIn: `HBONE + HTTP/1.1 ${method} ${path}`,
        protocolOut: decision.allowed
          ? `HBONE (as ${this.config.identity}) -> ${status}`
          : `${status} (L7 policy)`,
        peerIdentity: peer.toString(),
        authority: ctx.incoming.authorityString,
        baggage: ctx.incoming.baggageHeader,
        bytesToDst: reqBytes,
        bytesToSrc: resBytes,
        ...(error ? { error } : {}),
      });
    };
    if (!decision.allowed) {
      const body = 'RBAC: access denied';
      res.writeHead(403, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
      res.end(body);
      req.resume();
      note(403, 0, Buffer.byteLength(body), decision.reason);
      return;
    }
    void this.#forward(ctx, req, res).then(
      ({ status, reqBytes, resBytes }) => note(status, reqBytes, resBytes),
      (err: unknown) => {
        const msg = (err as Error).message;
        if (!res.headersSent) {
          const body = `upstream connect error or disconnect/reset before headers: ${msg}`;
          res.writeHead(503, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
          res.end(body);
        } else {
          res.destroy();
        }
        req.resume();
        note(503, 0, 0, msg);
      },
    );
  }

  async #forward(
    ctx: TunnelContext,
    req: http.IncomingMessage,
    res: http.ServerResponse,
  ): Promise<{ status: number; reqBytes: number; resBytes: number }> {
    const deps: OutboundDeps = {
      name: this.name,
      network: this.config.network,
      router: this.router,
      pool: this.#pool,
      identities: this.#identities,
      timeouts: this.section.timeouts,
      facts: this.#facts,
      accessLog: this.accessLog,
      tcp: this.tcp,
      observations: this.observations,
    };
    const self = this.#asWorkload();
    // As the waypoint, to one of the service's endpoints (never back to itself).
    const { stream: out } = await openOutbound(deps, {
      src: self,
      srcAddr: `${self.ip}:0`,
      dst: { host: ctx.service.vip, port: ctx.port },
      capturedBy: 'waypoint',
      viaWaypoint: this.name,
    });
    const headers: http.OutgoingHttpHeaders = { ...req.headers };
    for (const h of HOP_BY_HOP) delete headers[h];
    headers['x-forwarded-for'] = splitHostPort(ctx.srcAddr).host;
    headers['x-forwarded-client-cert'] = `By=${this.config.identity};URI=${ctx.incoming.peerIdentity}`;
    let reqBytes = 0;
    req.on('data', (c: Buffer) => {
      reqBytes += c.length;
    });
    return new Promise((resolve, reject) => {
      const upstream = http.request(
        {
          method: req.method,
          path: req.url,
          headers,
          createConnection: () => out,
          setHost: false,
        },
        (up) => {
          const resHeaders: http.OutgoingHttpHeaders = { ...up.headers };
          for (const h of HOP_BY_HOP) delete resHeaders[h];
          res.writeHead(up.statusCode ?? 502, resHeaders);
          let resBytes = 0;
          up.on('data', (c: Buffer) => {
            resBytes += c.length;
          });
          up.pipe(res);
          up.once('end', () => resolve({ status: up.statusCode ?? 502, reqBytes, resBytes }));
          up.once('error', reject);
        },
      );
      upstream.once('error', reject);
      req.pipe(upstream);
    });
  }

  /** Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const t of this.#tunnels) t.destroy();
      await Promise.all([
        this.#listener?.close(),
        this.#server?.destroy(),
        this.#pool.destroy(),
        ...this.#endpoints.map((e) => e.close()),
      ]);
    })();
    return this.#closing;
  }
}
