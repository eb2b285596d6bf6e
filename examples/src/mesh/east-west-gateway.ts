/**
 * The east-west gateway (the first seed's hop 3): HBONE on :15008 with its own identity. It
 * terminates the outer TLS only, accepts peers only from the trust domains it is configured to
 * accept, optionally routes on SNI (reads the ClientHello before TLS and refuses an SNI that is
 * not a SPIFFE ID of an accepted trust domain), resolves the CONNECT's hostname authority to the
 * node proxy that owns a destination on its network (the workload's :15008), and forwards the
 * inner bytes, still TLS, untouched. It never holds application bytes: `captured()` returns what
 * it forwarded, for tests to search.
 */
import type * as net from 'node:net';
import {
  createServer,
  type HboneServer,
  type HboneTunnel,
  type IncomingTunnel,
  joinTunnel,
} from '@hbone/hbone';
import { SpiffeId } from '@hbone/spiffe';
import { AccessLog } from './access-log.js';
import { configDumpHandler, type HttpEndpoint, listenHttp } from './admin.js';
import type { GatewayConfig, GatewaySection, MeshConfig, WorkloadConfig } from './config.js';
import { HboneListener } from './hbone-listener.js';
import { Observations } from './hop-observation.js';
import { Metrics, metricsHandler, TcpMetrics } from './metrics.js';
import { Router } from './routing.js';
import { dialTcp } from './tcp.js';
import type { IdentitySource } from './workload-identities.js';

export interface EastWestGatewayOptions {
  readonly mesh: MeshConfig;
  readonly gateway: GatewaySection;
  readonly identities: IdentitySource;
  readonly accessLogWrite?: (line: string) => void;
  /** Keep up to this many forwarded bytes (both ways) for `captured()`. Default 0. */
  readonly captureBytes?: number;
}

export class EastWestGateway {
  readonly name: string;
  /** Its entry in `mesh.gateways`: address, port, network, identity. */
  readonly config: GatewayConfig;
  readonly section: GatewaySection;
  readonly accessLog: AccessLog;
  readonly metrics = new Metrics();
  readonly tcp: TcpMetrics;
  readonly observations = new Observations();
  readonly router: Router;
  /** Connections refused before TLS (SNI routing) or at TLS (trust domain), with the reason. */
  readonly refused: string[] = [];
  readonly #identities: IdentitySource;
  readonly #captureLimit: number;
  readonly #captured: Buffer[] = [];
  #capturedBytes = 0;
  #server: HboneServer | undefined;
  #listener: HboneListener | undefined;
  readonly #upstreams = new Set<net.Socket>();
  readonly #http: HttpEndpoint[] = [];
  readonly #next = new Map<string, number>();
  #closing: Promise<void> | undefined;

  private constructor(opts: EastWestGatewayOptions) {
    const cfg = opts.mesh.gateways.find((g) => g.name === opts.gateway.name);
    if (!cfg) throw new Error(`no gateway ${opts.gateway.name} in the mesh configuration`);
    this.name = cfg.name;
    this.config = cfg;
    this.section = opts.gateway;
    this.router = new Router(opts.mesh);
    this.#identities = opts.identities;
    this.#captureLimit = opts.captureBytes ?? 0;
    this.accessLog = new AccessLog({
      component: cfg.name,
      ...(opts.accessLogWrite ? { write: opts.accessLogWrite } : {}),
    });
    this.tcp = new TcpMetrics(this.metrics);
  }

  static async start(opts: EastWestGatewayOptions): Promise<EastWestGateway> {
    const g = new EastWestGateway(opts);
    try {
      await g.#start();
    } catch (err) {
      await g.close();
      throw err;
    }
    return g;
  }

  async #start(): Promise<void> {
    await this.#identities.prepare([this.config.identity]);
    const accept = new Set(this.section.acceptTrustDomains);
    const server = createServer({
      ...this.#identities.credentials(this.config.identity),
      authorizer: (id) => accept.has(id.trustDomain.name),
      handler: (t) => this.#onTunnel(t),
      handshakeTimeoutMs: this.section.timeouts.handshakeMs,
      handlerTimeoutMs: this.section.timeouts.connectMs + 1000,
    });
    this.#server = server;
    server.on('clientError', (err: Error) => this.#refuse(`TLS/identity: ${err.message}`, undefined));
    this.#listener = await HboneListener.listen({
      host: this.section.listen?.address ?? this.config.address,
      port: this.section.listen?.port ?? this.config.port,
      server,
      check: (hello) => {
        if (this.section.sniRouting !== 'require') return undefined;
        if (hello.sni === undefined) return 'SNI routing: the ClientHello carries no SNI';
        const id = SpiffeId.tryParse(hello.sni);
        if (!id) return `SNI routing: SNI "${hello.sni}" is not a SPIFFE ID`;
        if (!accept.has(id.trustDomain.name)) {
          return `SNI routing: trust domain ${id.trustDomain.name} of SNI ${hello.sni} is not accepted (accepted: ${[...accept].join(', ')})`;
        }
        return undefined;
      },
      onRefused: (reason, socket) => this.#refuse(reason, `${socket.remoteAddress}:${socket.remotePort}`),
    });
    if (this.section.metricsPort !== null) {
      this.#http.push(
        await listenHttp(this.config.address, this.section.metricsPort, metricsHandler(this.metrics)),
      );
    }
    if (this.section.adminPort !== null) {
      this.#http.push(
        await listenHttp(
          this.#host,
          this.section.adminPort,
          configDumpHandler(() => ({
            gateway: this.config,
            section: this.section,
            certificates: this.#identities.held(),
            services: this.router.mesh.services,
          })),
        ),
      );
    }
  }

  get port(): number {
    return this.#listener?.port ?? this.config.port;
  }

  /** The address it listens on. */
  get #host(): string {
    return this.section.listen?.address ?? this.config.address;
  }

  /** Bytes it forwarded (both directions), up to `captureBytes`. */
  captured(): Buffer {
    return Buffer.concat(this.#captured, this.#capturedBytes);
  }

  #capture(chunk: Buffer): void {
    if (this.#capturedBytes >= this.#captureLimit) return;
    const part = chunk.subarray(0, this.#captureLimit - this.#capturedBytes);
    this.#captured.push(Buffer.from(part));
    this.#capturedBytes += part.length;
  }

  #refuse(reason: string, from: string | undefined): void {
    this.refused.push(reason);
    this.accessLog.record({
      direction: 'inbound',
      src: from ? { addr: from } : {},
      dst: { addr: `${this.config.address}:${this.port}`, identity: this.config.identity },
      bytesSent: 0,
      bytesRecv: 0,
      durationMs: 0,
      error: reason,
    });
    this.tcp.failed(
      { reporter: 'destination', dstPrincipal: this.config.identity, mtls: true },
      'TLS_FAILURE',
    );
  }

  /** The node proxy listener that owns the destination of a hostname (or IP) authority. */
  #resolve(t: IncomingTunnel): { workload: WorkloadConfig; host: string; port: number } | undefined {
    const a = t.authority;
    let candidates: WorkloadConfig[];
    if (a.kind === 'hostname') {
      const svc = this.router.serviceByHostname(a.host);
      if (!svc || !svc.ports.some((p) => p.port === a.port)) return undefined;
      candidates = this.router.endpoints(svc);
    } else {
      const w = this.router.workloadByIp(a.host);
      candidates = w ? [w] : [];
    }
    const mine = candidates.filter((w) => w.network === this.config.network && w.protocol === 'HBONE');
    if (mine.length === 0) return undefined;
    const i = this.#next.get(t.authorityString) ?? 0;
    this.#next.set(t.authorityString, i + 1);
    const w = mine[i % mine.length]!;
    return { workload: w, host: w.ip, port: w.hbonePort };
  }

  async #onTunnel(t: IncomingTunnel): Promise<void> {
    const started = performance.now();
    const peer = t.peerIdentity.toString();
    const remote = `${t.connection.remoteAddress}:${t.connection.remotePort}`;
    const hello = this.#listener?.hello(t.connection.remoteAddress, t.connection.remotePort);
    const facts = {
      reporter: 'destination' as const,
      srcPrincipal: peer,
      dstPrincipal: this.config.identity,
      mtls: true,
    };
    const finish = (upstream: string | undefined, toDst: number, toSrc: number, error?: string): void => {
      this.accessLog.record({
        direction: 'inbound',
        src: { addr: remote, identity: peer },
        dst: {
          addr: t.authorityString,
          ...(upstream ? { hboneAddr: upstream } : {}),
          identity: this.config.identity,
        },
        bytesSent: toDst,
        bytesRecv: toSrc,
        durationMs: performance.now() - started,
        ...(error ? { error } : {}),
      });
      this.observations.add({
        component: this.name,
        role: 'east-west gateway',
        protocolIn: 'HBONE (outer TLS terminated)',
        protocolOut: upstream ? `inner TLS bytes, untouched, to ${upstream}` : 'none',
        peerIdentity: peer,
        ...(hello?.sni ? { sni: hello.sni } : {}),
        ...(hello ? { alpn: hello.alpn.join(',') } : {}),
        authority: t.authorityString,
        baggage: t.baggageHeader,
        ...(typeof t.headers.traceparent === 'string' ? { traceparent: t.headers.traceparent } : {}),
        bytesToDst: toDst,
        bytesToSrc: toSrc,
        ...(error ? { error } : {}),
      });
    };
    const target = this.#resolve(t);
    if (!target) {
      if (t.decision === 'pending') t.reject(503);
      this.tcp.failed(facts, 'CONNECT');
      finish(undefined, 0, 0, `no destination for ${t.authorityString} on network ${this.config.network}`);
      return;
    }
    const upstreamAddr = `${target.host}:${target.port}`;
    let upstream: net.Socket;
    try {
      upstream = await dialTcp(target.host, target.port, {
        localAddress: this.section.listen?.address ?? this.config.address,
        timeoutMs: this.section.timeouts.connectMs,
      });
    } catch (err) {
      if (t.decision === 'pending' && !t.stream.closed) t.reject(503);
      this.tcp.failed(facts, 'CONNECT');
      finish(upstreamAddr, 0, 0, `upstream connect to ${upstreamAddr} failed: ${(err as Error).message}`);
      return;
    }
    if (t.decision !== 'pending' || t.stream.closed) {
      upstream.destroy();
      return;
    }
    const tunnel: HboneTunnel = t.accept();
    this.#upstreams.add(upstream);
    const dstFacts = {
      ...facts,
      dstWorkload: target.workload.name,
      dstNamespace: target.workload.namespace,
      dstCluster: target.workload.cluster,
    };
    this.tcp.opened(dstFacts);
    if (this.#captureLimit > 0) {
      // Observers only: attached in the same tick as the pipes joinTunnel sets up.
      tunnel.on('data', (c: Buffer) => this.#capture(c));
      upstream.on('data', (c: Buffer) => this.#capture(c));
    }
    const r = await joinTunnel(tunnel, upstream);
    this.#upstreams.delete(upstream);
    this.tcp.closed(dstFacts, r.bytesFromTunnel, r.bytesToTunnel);
    finish(upstreamAddr, r.bytesFromTunnel, r.bytesToTunnel, r.error?.message);
  }

  /** Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const u of this.#upstreams) u.destroy();
      this.#upstreams.clear();
      await Promise.all([
        this.#listener?.close(),
        this.#server?.destroy(),
        ...this.#http.map((h) => h.close()),
      ]);
    })();
    return this.#closing;
  }
}
