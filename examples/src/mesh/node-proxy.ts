/**
 * The node proxy: ztunnel's role for one node, assembled from `@hbone/hbone` and `@hbone/pool`.
 * It acts as each HBONE workload on its node (their identities on outbound tunnels, the pool
 * keyed by them; their identities on the inbound listeners at their IPs).
 *
 * Listeners (each port configurable, `null` to disable):
 * - on the proxy's address: SOCKS5 :15080 (the original destination from a CONNECT; the source
 *   workload from the client's address), outbound capture :15001 (the original 5-tuple from a
 *   PROXY v1 header, since nothing redirects here), metrics :15020, readiness :15021, admin
 *   :15000 (config dump);
 * - on each local workload's IP: HBONE :15008 and plaintext :15006 (inbound.ts).
 * `connectOutbound({ src, dst })` is the same capture as an API, for tests.
 */
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import type { Duplex } from 'node:stream';
import { HboneTunnel, joinTunnel } from '@hbone/hbone';
import type { HbonePool } from '@hbone/pool';
import { AccessLog } from './access-log.js';
import { configDumpHandler, type HttpEndpoint, listenHttp, readinessHandler } from './admin.js';
import type {
  MeshConfig,
  PeerAuthenticationMode,
  PolicyConfig,
  ProxySection,
  WorkloadConfig,
} from './config.js';
import { HopError, NoRouteError, NotLocalWorkloadError } from './errors.js';
import { Observations } from './hop-observation.js';
import { Inbound } from './inbound.js';
import { Metrics, metricsHandler, TcpMetrics } from './metrics.js';
import { createProxyPool, type Outbound, openOutbound, type SessionFacts } from './outbound.js';
import { readProxyHeader } from './proxy-protocol.js';
import { type Destination, Router } from './routing.js';
import { readSocks5Request, SocksReply, socks5Reply } from './socks5.js';
import { joinSockets, splitHostPort } from './tcp.js';
import type { IdentitySource } from './workload-identities.js';

export interface NodeProxyOptions {
  readonly mesh: MeshConfig;
  readonly proxy: ProxySection;
  readonly identities: IdentitySource;
  /** Where access-log lines go (default: kept in memory only). */
  readonly accessLogWrite?: (line: string) => void;
}

export interface OutboundTarget {
  /** The source workload's IP, or `ip:port` of its socket. */
  readonly src: string;
  /** `host:port` (IP or service hostname), or the parts. */
  readonly dst: string | Destination;
}

/** SOCKS5 reply for a failure. */
function socksReplyFor(err: unknown): number {
  if (err instanceof NotLocalWorkloadError) return SocksReply.NOT_ALLOWED;
  if (err instanceof NoRouteError) return SocksReply.NETWORK_UNREACHABLE;
  if (err instanceof HopError) {
    if (err.hopCause === 'denied') return SocksReply.NOT_ALLOWED;
    if (err.hopCause === 'unreachable') return SocksReply.CONNECTION_REFUSED;
    if (err.hopCause === 'timeout') return SocksReply.HOST_UNREACHABLE;
  }
  return SocksReply.GENERAL_FAILURE;
}

const plainIp = (a: string | undefined): string => (a ?? '').replace(/^::ffff:/, '');

function parseDestination(dst: string | Destination): Destination {
  if (typeof dst !== 'string') return dst;
  return splitHostPort(dst);
}

export class NodeProxy extends EventEmitter {
  readonly name: string;
  readonly config: ProxySection;
  readonly accessLog: AccessLog;
  readonly metrics = new Metrics();
  readonly tcp: TcpMetrics;
  readonly observations = new Observations();
  readonly pool: HbonePool;
  readonly router: Router;
  readonly #identities: IdentitySource;
  readonly #facts = new Map<string, SessionFacts>();
  #policies: readonly PolicyConfig[];
  #mode: PeerAuthenticationMode;
  #inbound: Inbound | undefined;
  readonly #tcpServers: net.Server[] = [];
  readonly #clientSockets = new Set<net.Socket>();
  readonly #outboundStreams = new Set<Duplex>();
  readonly #http: HttpEndpoint[] = [];
  readonly #bound: Record<string, number> = {};
  #ready = false;
  #closing: Promise<void> | undefined;

  private constructor(opts: NodeProxyOptions) {
    super();
    this.name = opts.proxy.name;
    this.config = opts.proxy;
    this.router = new Router(opts.mesh);
    this.#identities = opts.identities;
    this.#policies = opts.mesh.policies;
    this.#mode = opts.proxy.peerAuthentication ?? opts.mesh.peerAuthentication;
    this.accessLog = new AccessLog({
      component: this.name,
      ...(opts.accessLogWrite ? { write: opts.accessLogWrite } : {}),
    });
    this.tcp = new TcpMetrics(this.metrics);
    this.pool = createProxyPool({
      identities: opts.identities,
      timeouts: opts.proxy.timeouts,
      idleTimeoutMs: opts.proxy.poolIdleMs,
      gateways: () => this.router.mesh.gateways,
      facts: this.#facts,
    });
    this.metrics.gauge('hbone_pool_connections', 'Live outbound HBONE connections in the pool.', () => [
      { labels: { proxy: this.name }, value: this.pool.stats().liveConnections },
    ]);
    this.metrics.gauge(
      'hbone_pool_dials_total',
      'Outbound HBONE connections dialled.',
      () => [{ labels: { proxy: this.name }, value: this.pool.stats().dials }],
      'counter',
    );
    this.metrics.gauge('hbone_pool_tunnels', 'Tunnels open on pooled outbound HBONE connections.', () => [
      { labels: { proxy: this.name }, value: this.pool.stats().activeTunnels },
    ]);
    this.metrics.gauge('hbone_inbound_connections', 'Live inbound HBONE connections.', () => [
      { labels: { proxy: this.name }, value: this.#inbound?.hboneConnections ?? 0 },
    ]);
  }

  /** Starts every listener; on failure closes what started and rejects. */
  static async start(opts: NodeProxyOptions): Promise<NodeProxy> {
    const p = new NodeProxy(opts);
    try {
      await p.#start(opts);
    } catch (err) {
      await p.close();
      throw err;
    }
    return p;
  }

  async #start(opts: NodeProxyOptions): Promise<void> {
    const local = this.localWorkloads();
    await this.#identities.prepare(local.map((w) => w.identity));
    const accept = opts.proxy.acceptTrustDomains ?? [
      ...new Set(opts.mesh.clusters.map((c) => c.trustDomain)),
    ];
    this.#inbound = await Inbound.start(
      {
        name: this.name,
        address: this.config.address,
        router: this.router,
        identities: this.#identities,
        policies: () => this.#policies,
        mode: () => this.#mode,
        acceptTrustDomains: accept,
        timeouts: this.config.timeouts,
        accessLog: this.accessLog,
        tcp: this.tcp,
        observations: this.observations,
      },
      local.filter((w) => w.protocol === 'HBONE'),
    );
    const { ports, address } = this.config;
    if (ports.socks5 !== null) await this.#listenTcp('socks5', ports.socks5, (s) => this.#onSocks(s));
    if (ports.outbound !== null) await this.#listenTcp('outbound', ports.outbound, (s) => this.#onCapture(s));
    if (ports.metrics !== null)
      this.#addHttp('metrics', await listenHttp(address, ports.metrics, metricsHandler(this.metrics)));
    if (ports.readiness !== null) {
      this.#addHttp(
        'readiness',
        await listenHttp(
          address,
          ports.readiness,
          readinessHandler(() => this.ready),
        ),
      );
    }
    if (ports.admin !== null) {
      this.#addHttp(
        'admin',
        await listenHttp(
          address,
          ports.admin,
          configDumpHandler(() => this.configDump()),
        ),
      );
    }
    this.#ready = true;
  }

  #addHttp(name: string, e: HttpEndpoint): void {
    this.#http.push(e);
    this.#bound[name] = e.port;
  }

  async #listenTcp(name: string, port: number, onConnection: (s: net.Socket) => void): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
      this.#clientSockets.add(s);
      s.once('close', () => this.#clientSockets.delete(s));
      s.on('error', () => {});
      onConnection(s);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, this.config.address, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    this.#tcpServers.push(server);
    this.#bound[name] = (server.address() as net.AddressInfo).port;
  }

  /** True once every listener is up, until close. */
  get ready(): boolean {
    return this.#ready;
  }

  /** The port a listener is bound to (`socks5`, `outbound`, `metrics`, `readiness`, `admin`). */
  port(name: 'socks5' | 'outbound' | 'metrics' | 'readiness' | 'admin'): number | undefined {
    return this.#bound[name];
  }

  /** Workloads on this proxy's node. */
  localWorkloads(): WorkloadConfig[] {
    return this.router.mesh.workloads.filter((w) => w.node === this.config.node);
  }

  get peerAuthentication(): PeerAuthenticationMode {
    return this.#mode;
  }

  /** Live inbound HBONE connections (on all local workloads' listeners). */
  get inboundHboneConnections(): number {
    return this.#inbound?.hboneConnections ?? 0;
  }

  /**
   * Replaces the authorisation policies (an xDS push) and re-checks open inbound connections:
   * those now denied are closed. Resolves with how many were.
   */
  setPolicies(policies: readonly PolicyConfig[]): number {
    this.#policies = policies;
    return this.#inbound?.recheck() ?? 0;
  }

  setPeerAuthentication(mode: PeerAuthenticationMode): void {
    this.#mode = mode;
  }

  #local(srcIp: string): WorkloadConfig {
    const w = this.localWorkloads().find((x) => x.ip === srcIp && x.protocol === 'HBONE');
    if (!w) throw new NotLocalWorkloadError(this.name, srcIp);
    return w;
  }

  /**
   * Opens an outbound connection as the workload at `src` (a local one) to `dst`, and gives
   * its byte stream. Rejects with NoRouteError, NotLocalWorkloadError or a HopError naming the
   * hop and the cause.
   */
  async connectOutbound(target: OutboundTarget): Promise<Duplex> {
    return (await this.openOutbound(target)).stream;
  }

  /** `connectOutbound` with the route taken and a promise of the logged end. */
  async openOutbound(target: OutboundTarget, capturedBy = 'API'): Promise<Outbound> {
    const src = target.src.includes(':') ? splitHostPort(target.src) : { host: target.src, port: 0 };
    const dst = parseDestination(target.dst);
    const w = this.#local(src.host);
    const o = await openOutbound(
      {
        name: this.name,
        network: this.config.network,
        router: this.router,
        pool: this.pool,
        identities: this.#identities,
        timeouts: this.config.timeouts,
        facts: this.#facts,
        accessLog: this.accessLog,
        tcp: this.tcp,
        observations: this.observations,
      },
      { src: w, srcAddr: `${src.host}:${src.port}`, dst, capturedBy },
    );
    this.#outboundStreams.add(o.stream);
    o.stream.once('close', () => this.#outboundStreams.delete(o.stream));
    return o;
  }

  #join(stream: Duplex, client: net.Socket): void {
    if (stream instanceof HboneTunnel) void joinTunnel(stream, client);
    else void joinSockets(stream as net.Socket, client);
  }

  #onSocks(s: net.Socket): void {
    const srcIp = plainIp(s.remoteAddress);
    readSocks5Request(s).then(
      async (req) => {
        let o: Outbound;
        try {
          o = await this.openOutbound({ src: `${srcIp}:${s.remotePort}`, dst: req }, 'SOCKS5');
        } catch (err) {
          socks5Reply(s, socksReplyFor(err));
          s.end();
          this.emit('outboundError', err);
          return;
        }
        if (s.destroyed) {
          o.stream.destroy();
          return;
        }
        socks5Reply(s, SocksReply.SUCCEEDED, { host: this.config.address, port: this.#bound.socks5 ?? 0 });
        this.#join(o.stream, s);
      },
      () => s.destroy(),
    );
  }

  #onCapture(s: net.Socket): void {
    readProxyHeader(s).then(
      async (h) => {
        if (plainIp(s.remoteAddress) !== h.src.host) {
          s.resetAndDestroy();
          this.emit(
            'outboundError',
            new NotLocalWorkloadError(
              this.name,
              `${h.src.host} (claimed by a connection from ${s.remoteAddress})`,
            ),
          );
          return;
        }
        let o: Outbound;
        try {
          o = await this.openOutbound({ src: `${h.src.host}:${h.src.port}`, dst: h.dst }, 'PROXY v1');
        } catch (err) {
          s.resetAndDestroy();
          this.emit('outboundError', err);
          return;
        }
        if (s.destroyed) {
          o.stream.destroy();
          return;
        }
        this.#join(o.stream, s);
      },
      () => s.destroy(),
    );
  }

  /** What `/config_dump` on :15000 returns. */
  configDump(): Record<string, unknown> {
    const mesh = this.router.mesh;
    return {
      proxy: this.config,
      peerAuthentication: this.#mode,
      workloads: this.localWorkloads(),
      certificates: this.#identities.held(),
      listeners: { ...this.#bound, inbound: this.#inbound?.listeners() ?? [] },
      services: mesh.services,
      gateways: mesh.gateways,
      waypoints: mesh.waypoints,
      policies: this.#policies,
      pool: this.pool.stats(),
    };
  }

  /** Stops everything: listeners, pooled connections, open tunnels. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#ready = false;
      for (const s of this.#clientSockets) s.destroy();
      for (const s of this.#outboundStreams) s.destroy();
      await Promise.all([
        ...this.#tcpServers.map((srv) => new Promise<void>((r) => srv.close(() => r()))),
        ...this.#http.map((h) => h.close()),
        this.#inbound?.close(),
        this.pool.destroy(),
      ]);
    })();
    return this.#closing;
  }
}
