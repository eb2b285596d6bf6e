/**
 * Where a node proxy sends an outbound connection (ztunnel's outbound decision, as the first
 * seed walks it):
 * - a service with a waypoint: HBONE to the waypoint, `:authority` the service VIP and port;
 * - an HBONE workload on the same network: HBONE straight to the workload's :15008;
 * - an HBONE workload on another network: double HBONE through that network's east-west
 *   gateway, `:authority` the service hostname and port;
 * - a TCP-only workload (out of the mesh): plaintext to its address;
 * - anything else: `NoRouteError`. An unknown address is never dialled in plaintext.
 */
import { isIP } from 'node:net';
import type {
  GatewayConfig,
  MeshConfig,
  ServiceConfig,
  ServicePort,
  WaypointConfig,
  WorkloadConfig,
} from './config.js';
import { NoRouteError } from './errors.js';

export interface Destination {
  /** An IP (pod IP or service VIP) or a service hostname (SOCKS5 with a domain name). */
  readonly host: string;
  readonly port: number;
}

interface RouteBase {
  /** The destination as asked for: `ip:port` or `hostname:port`. */
  readonly asked: string;
  /** The service the destination belongs to, if any. */
  readonly service: ServiceConfig | undefined;
}

export interface HboneRoute extends RouteBase {
  readonly kind: 'hbone';
  readonly workload: WorkloadConfig;
  /** The destination's HBONE listener: its IP, port 15008. */
  readonly address: { readonly host: string; readonly port: number };
  /** `workloadIp:targetPort`. */
  readonly authority: string;
  readonly identities: readonly string[];
}

export interface DoubleHboneRoute extends RouteBase {
  readonly kind: 'double-hbone';
  readonly service: ServiceConfig;
  readonly gateway: GatewayConfig;
  readonly address: { readonly host: string; readonly port: number };
  /** `hostname:servicePort`, on both the outer and the inner CONNECT. */
  readonly authority: string;
  /** The identities the inner session may present: the service's endpoints on that network. */
  readonly identities: readonly string[];
  /** The network the destination lives on. */
  readonly network: string;
}

export interface PlaintextRoute extends RouteBase {
  readonly kind: 'plaintext';
  readonly workload: WorkloadConfig;
  readonly address: { readonly host: string; readonly port: number };
}

export interface WaypointRoute extends RouteBase {
  readonly kind: 'waypoint';
  readonly service: ServiceConfig;
  readonly waypoint: WaypointConfig;
  readonly address: { readonly host: string; readonly port: number };
  /** `vip:servicePort`: the waypoint finds the service from it. */
  readonly authority: string;
  readonly identities: readonly string[];
}

export type Route = HboneRoute | DoubleHboneRoute | PlaintextRoute | WaypointRoute;

export interface RouteOptions {
  /** The component asking, for error messages. */
  readonly from: string;
  /** The network the source lives on. */
  readonly network: string;
  /** Set by a waypoint routing on behalf of a service: do not send it back to itself. */
  readonly viaWaypoint?: string;
}

const hostPort = (host: string, port: number): string => `${isIP(host) === 6 ? `[${host}]` : host}:${port}`;

/** Resolves destinations against one mesh configuration. Endpoints are picked round robin. */
export class Router {
  #mesh: MeshConfig;
  readonly #next = new Map<string, number>();

  constructor(mesh: MeshConfig) {
    this.#mesh = mesh;
  }

  get mesh(): MeshConfig {
    return this.#mesh;
  }

  /** Swaps in a new configuration (an xDS push). */
  update(mesh: MeshConfig): void {
    this.#mesh = mesh;
  }

  workloadByIp(ip: string): WorkloadConfig | undefined {
    return this.#mesh.workloads.find((w) => w.ip === ip);
  }

  serviceByVip(ip: string): ServiceConfig | undefined {
    return this.#mesh.services.find((s) => s.vip === ip);
  }

  serviceByHostname(hostname: string): ServiceConfig | undefined {
    const h = hostname.toLowerCase();
    return this.#mesh.services.find((s) => s.hostname.toLowerCase() === h);
  }

  /** The service a workload backs (the first that lists it). */
  serviceOf(w: WorkloadConfig): ServiceConfig | undefined {
    return this.#mesh.services.find((s) => s.endpoints.includes(`${w.namespace}/${w.name}`));
  }

  endpoints(s: ServiceConfig): WorkloadConfig[] {
    return s.endpoints
      .map((e) => this.#mesh.workloads.find((w) => `${w.namespace}/${w.name}` === e))
      .filter((w): w is WorkloadConfig => w !== undefined);
  }

  gatewayFor(network: string): GatewayConfig | undefined {
    return this.#mesh.gateways.find((g) => g.network === network);
  }

  waypoint(name: string): WaypointConfig | undefined {
    return this.#mesh.waypoints.find((w) => w.name === name);
  }

  /** Decides the route, or throws NoRouteError. */
  route(dst: Destination, opts: RouteOptions): Route {
    const asked = hostPort(dst.host, dst.port);
    const noRoute = (reason: string): NoRouteError => new NoRouteError(opts.from, asked, reason);
    if (isIP(dst.host) === 0) {
      const svc = this.serviceByHostname(dst.host);
      if (!svc) {
        throw noRoute("unknown hostname: no such service in this proxy's configuration (stale config?)");
      }
      return this.#routeService(svc, dst.port, asked, opts, noRoute);
    }
    const svc = this.serviceByVip(dst.host);
    if (svc) return this.#routeService(svc, dst.port, asked, opts, noRoute);
    const w = this.workloadByIp(dst.host);
    if (!w) {
      throw noRoute(
        'unknown address: neither a service VIP nor a workload this proxy knows (stale config? the service may not have reached this proxy yet)',
      );
    }
    return this.#routeWorkload(w, dst.port, undefined, undefined, asked, opts, noRoute);
  }

  #routeService(
    svc: ServiceConfig,
    port: number,
    asked: string,
    opts: RouteOptions,
    noRoute: (reason: string) => NoRouteError,
  ): Route {
    const sp = svc.ports.find((p) => p.port === port);
    if (!sp) {
      throw noRoute(
        `service ${svc.hostname} has no port ${port} (ports: ${svc.ports.map((p) => p.port).join(', ')})`,
      );
    }
    if (svc.waypoint !== undefined && svc.waypoint !== opts.viaWaypoint) {
      const wp = this.waypoint(svc.waypoint);
      if (!wp) throw noRoute(`waypoint ${svc.waypoint} is not configured`);
      if (wp.network !== opts.network) {
        throw noRoute(
          `waypoint ${wp.name} is on network ${wp.network}: cross-network waypoints are not supported`,
        );
      }
      return {
        kind: 'waypoint',
        asked,
        service: svc,
        waypoint: wp,
        address: { host: wp.address, port: wp.port },
        authority: hostPort(svc.vip, sp.port),
        identities: [wp.identity],
      };
    }
    const all = this.endpoints(svc);
    if (all.length === 0) throw noRoute(`service ${svc.hostname} has no endpoints`);
    const local = all.filter((w) => w.network === opts.network);
    const pool = local.length > 0 ? local : all;
    const key = `${svc.namespace}/${svc.name}`;
    const i = this.#next.get(key) ?? 0;
    this.#next.set(key, i + 1);
    const w = pool[i % pool.length]!;
    return this.#routeWorkload(w, sp.targetPort, svc, sp, asked, opts, noRoute);
  }

  #routeWorkload(
    w: WorkloadConfig,
    targetPort: number,
    svc: ServiceConfig | undefined,
    sp: ServicePort | undefined,
    asked: string,
    opts: RouteOptions,
    noRoute: (reason: string) => NoRouteError,
  ): Route {
    if (w.protocol === 'TCP') {
      if (w.network !== opts.network) {
        throw noRoute(
          `${w.namespace}/${w.name} is TCP-only on network ${w.network}: unreachable in plaintext`,
        );
      }
      return {
        kind: 'plaintext',
        asked,
        service: svc,
        workload: w,
        address: { host: w.ip, port: targetPort },
      };
    }
    if (w.network === opts.network) {
      return {
        kind: 'hbone',
        asked,
        service: svc,
        workload: w,
        address: { host: w.ip, port: w.hbonePort },
        authority: hostPort(w.ip, targetPort),
        identities: [w.identity],
      };
    }
    const service = svc ?? this.serviceOf(w);
    if (!service) {
      throw noRoute(
        `${w.namespace}/${w.name} is on network ${w.network} and backs no service: double HBONE needs a service hostname`,
      );
    }
    const gateway = this.gatewayFor(w.network);
    if (!gateway) throw noRoute(`no east-west gateway is configured for network ${w.network}`);
    const servicePort = sp?.port ?? service.ports.find((p) => p.targetPort === targetPort)?.port;
    if (servicePort === undefined) {
      throw noRoute(`service ${service.hostname} exposes no port targeting ${targetPort}`);
    }
    const remote = this.endpoints(service).filter((e) => e.network === w.network && e.protocol === 'HBONE');
    return {
      kind: 'double-hbone',
      asked,
      service,
      gateway,
      address: { host: gateway.address, port: gateway.port },
      authority: hostPort(service.hostname, servicePort),
      identities: [...new Set(remote.map((e) => e.identity))],
      network: w.network,
    };
  }
}

/** Where an inbound CONNECT's authority points on this workload: its target port. */
export function inboundTargetPort(
  router: Router,
  w: WorkloadConfig,
  authority: { kind: string; host: string; port: number },
): number | undefined {
  if (authority.kind === 'hostname') {
    const svc = router.serviceByHostname(authority.host);
    if (!svc || !svc.endpoints.includes(`${w.namespace}/${w.name}`)) return undefined;
    return svc.ports.find((p) => p.port === authority.port)?.targetPort;
  }
  if (authority.host === w.ip) return authority.port;
  const svc = router.serviceByVip(authority.host);
  if (svc?.endpoints.includes(`${w.namespace}/${w.name}`)) {
    return svc.ports.find((p) => p.port === authority.port)?.targetPort;
  }
  return undefined;
}
