/**
 * A node proxy's outbound half (ztunnel's outbound): for one captured connection of a local
 * workload, take the route (routing.ts), open it as that workload, and account for it.
 * - HBONE (same network, or to a waypoint): a tunnel from the pool, keyed by {source identity,
 *   expected identities, destination :15008, source IP}: many connections, one HBONE connection.
 * - double HBONE: an outer tunnel from the pool to the east-west gateway (its identity
 *   verified), a fresh TLS 1.3 + h2 session inside it verifying the remote workload, and the
 *   inner CONNECT with `x-forwarded-network`.
 * - plaintext: a TCP connection from the workload's IP to a TCP-only destination.
 * Each connection ends in one access-log line, `istio_tcp_*` counters (reporter=source) and a
 * hop observation; each failure is a typed error naming the hop and the cause.
 */
import type * as net from 'node:net';
import type { Duplex } from 'node:stream';
import {
  connect,
  connectOver,
  formatBaggage,
  type HboneClientSession,
  type HboneTunnel,
  type TunnelRequest,
  UpstreamUnavailableError,
  type WorkloadAttributes,
} from '@hbone/hbone';
import { createPool, type HbonePool, type PoolKey, type ResolvedPoolKey, resolvePoolKey } from '@hbone/pool';
import type { AccessLog } from './access-log.js';
import type { GatewayConfig, Timeouts, WorkloadConfig } from './config.js';
import { classifyHopError, type Hop, HopError } from './errors.js';
import type { Observations } from './hop-observation.js';
import type { TcpLabelFacts, TcpMetrics } from './metrics.js';
import type { Destination, Route, Router } from './routing.js';
import { dialTcp } from './tcp.js';
import type { IdentitySource } from './workload-identities.js';

/** What the default dialer learnt about each pooled connection: for logs and the hop table. */
export interface SessionFacts {
  readonly peerIdentity: string;
  readonly alpn: string;
  readonly sni: string | undefined;
}

/** The workload's attributes as ztunnel puts them in `baggage`. */
export function workloadAttributes(w: WorkloadConfig): WorkloadAttributes {
  const [region, zone] = (w.locality ?? '').split('/');
  return {
    clusterName: w.cluster,
    namespace: w.namespace,
    workloadKind: w.workloadKind,
    workloadName: w.name,
    serviceName: w.labels['service.istio.io/canonical-name'] ?? w.labels.app ?? w.name,
    serviceVersion: w.labels['service.istio.io/canonical-revision'] ?? w.labels.version ?? 'latest',
    ...(region ? { region } : {}),
    ...(zone ? { zone } : {}),
  };
}

export interface ProxyPoolOptions {
  readonly identities: IdentitySource;
  readonly timeouts: Timeouts;
  readonly idleTimeoutMs: number;
  /** The gateways: SNI policy per gateway address. */
  readonly gateways: () => readonly GatewayConfig[];
  /** Filled on each dial. */
  readonly facts: Map<string, SessionFacts>;
}

/** The proxy's pool: dials as the key's source identity, from its IP, with the SNI its peer wants. */
export function createProxyPool(o: ProxyPoolOptions): HbonePool {
  return createPool({
    config: {
      idleTimeoutMs: o.idleTimeoutMs,
      openTimeoutMs: o.timeouts.handshakeMs + o.timeouts.connectMs,
      // A failed dial is reported at once; no backoff hides the next attempt's real cause.
      backoffInitialMs: 0,
      backoffMaxMs: 0,
    },
    generation: () => 0,
    dial: async (key: ResolvedPoolKey): Promise<HboneClientSession> => {
      const gw = o.gateways().find((g) => g.address === key.address.host && g.port === key.address.port);
      const sni = gw?.sni === 'source-identity' ? { identity: key.source } : undefined;
      const session = await connect(key.address, {
        ...o.identities.credentials(key.source.toString()),
        expectedIdentities: key.destinations,
        ...(key.sourceIp ? { localAddress: key.sourceIp } : {}),
        ...(sni ? { sni } : {}),
        handshakeTimeoutMs: o.timeouts.handshakeMs,
        connectResponseTimeoutMs: o.timeouts.connectMs,
      });
      o.facts.set(key.id, {
        peerIdentity: session.peerIdentity.toString(),
        alpn: String(session.tls.alpn),
        sni: sni ? key.source.toString() : undefined,
      });
      return session;
    },
  });
}

export interface OutboundDeps {
  readonly name: string;
  readonly network: string;
  readonly router: Router;
  readonly pool: HbonePool;
  readonly identities: IdentitySource;
  readonly timeouts: Timeouts;
  readonly facts: ReadonlyMap<string, SessionFacts>;
  readonly accessLog: AccessLog;
  readonly tcp: TcpMetrics;
  readonly observations: Observations;
}

export interface OutboundRequest {
  readonly src: WorkloadConfig;
  /** `ip:port` of the application's socket (the port may be 0 when unknown). */
  readonly srcAddr: string;
  readonly dst: Destination;
  /** How the connection was captured, for the hop table: 'SOCKS5', 'PROXY v1', 'API'. */
  readonly capturedBy: string;
  /** Set when a waypoint sends on a request it handled: do not route back to it. */
  readonly viaWaypoint?: string;
}

export interface Outbound {
  /** The byte stream to the destination: an HBONE tunnel, or a TCP socket for plaintext. */
  readonly stream: Duplex;
  readonly route: Route;
  /** Resolves when the connection is over and logged. */
  readonly done: Promise<void>;
}

interface Opened {
  stream: Duplex;
  counts: () => { toDst: number; toSrc: number };
  peerIdentity: string | undefined;
  sni: string | undefined;
  alpn: string | undefined;
  authority: string | undefined;
  baggage: string | undefined;
  traceparent: string | undefined;
  hboneAddr: string | undefined;
}

const tunnelCounts = (t: HboneTunnel) => () => ({ toDst: t.bytesSent, toSrc: t.bytesReceived });

async function openRoute(d: OutboundDeps, req: OutboundRequest, route: Route): Promise<Opened> {
  const { src } = req;
  const attrs = workloadAttributes(src);
  const baggage = formatBaggage(attrs);
  const openTimeoutMs = d.timeouts.handshakeMs + d.timeouts.connectMs;
  switch (route.kind) {
    case 'plaintext': {
      const hop: Hop = {
        from: d.name,
        to: `TCP-only workload ${route.workload.namespace}/${route.workload.name}`,
        address: `${route.address.host}:${route.address.port}`,
      };
      let s: net.Socket;
      try {
        s = await dialTcp(route.address.host, route.address.port, {
          localAddress: src.ip,
          timeoutMs: d.timeouts.handshakeMs,
        });
      } catch (err) {
        throw classifyHopError(hop, err);
      }
      return {
        stream: s,
        counts: () => ({ toDst: s.bytesWritten, toSrc: s.bytesRead }),
        peerIdentity: undefined,
        sni: undefined,
        alpn: undefined,
        authority: undefined,
        baggage: undefined,
        traceparent: undefined,
        hboneAddr: undefined,
      };
    }
    case 'hbone':
    case 'waypoint': {
      const key: PoolKey = {
        source: src.identity,
        destinations: route.identities,
        address: route.address,
        sourceIp: src.ip,
      };
      const to =
        route.kind === 'waypoint'
          ? `waypoint ${route.waypoint.name}`
          : `${route.workload.namespace}/${route.workload.name}'s proxy`;
      const hop: Hop = { from: d.name, to, address: `${route.address.host}:${route.address.port}` };
      const request: TunnelRequest = { authority: route.authority, baggage, forwarded: { for: req.srcAddr } };
      let t: HboneTunnel;
      try {
        t = await d.pool.open(key, request, { timeoutMs: openTimeoutMs });
      } catch (err) {
        throw classifyHopError(hop, err);
      }
      const facts = d.facts.get(resolvePoolKey(key).id);
      return {
        stream: t,
        counts: tunnelCounts(t),
        peerIdentity: facts?.peerIdentity,
        sni: facts?.sni,
        alpn: facts?.alpn,
        authority: route.authority,
        baggage,
        traceparent: String(t.requestHeaders.traceparent ?? ''),
        hboneAddr: `${route.address.host}:${route.address.port}`,
      };
    }
    case 'double-hbone': {
      const gw = route.gateway;
      const toGateway: Hop = {
        from: d.name,
        to: `east-west gateway ${gw.name} (network ${gw.network})`,
        address: `${gw.address}:${gw.port}`,
      };
      const outerKey: PoolKey = {
        source: src.identity,
        destinations: [gw.identity],
        address: route.address,
        sourceIp: src.ip,
      };
      let outer: HboneTunnel;
      try {
        outer = await d.pool.open(
          outerKey,
          { authority: route.authority, baggage },
          { timeoutMs: openTimeoutMs },
        );
      } catch (err) {
        if (err instanceof UpstreamUnavailableError) {
          // The gateway answered: it could not reach the proxy that owns the destination.
          throw classifyHopError(
            { from: `east-west gateway ${gw.name}`, to: `the proxy owning ${route.authority}` },
            err,
          );
        }
        throw classifyHopError(toGateway, err);
      }
      const throughGateway: Hop = {
        from: d.name,
        to: `${route.authority}'s proxy through gateway ${gw.name} (inner TLS)`,
      };
      let inner: HboneClientSession;
      try {
        // A far end that rejects our certificate ends the outer tunnel: connectOver fails at
        // once with a TLS error (mesh-library-gaps.test.ts pins it).
        inner = await connectOver(outer as Duplex, {
          ...d.identities.credentials(src.identity),
          expectedIdentities: route.identities,
          handshakeTimeoutMs: d.timeouts.handshakeMs,
          connectResponseTimeoutMs: d.timeouts.connectMs,
        });
      } catch (err) {
        outer.destroy();
        throw classifyHopError(throughGateway, err);
      }
      let t: HboneTunnel;
      try {
        t = await inner.open({
          authority: route.authority,
          baggage,
          forwarded: { for: req.srcAddr },
          forwardedNetwork: d.network,
        });
      } catch (err) {
        inner.destroy();
        outer.destroy();
        throw classifyHopError({ ...throughGateway, to: `${route.authority}'s proxy (inner CONNECT)` }, err);
      }
      t.once('close', () => {
        void inner.close().then(() => {
          if (!outer.destroyed && !outer.writableEnded) outer.end();
        });
      });
      inner.once('close', () => {
        if (!outer.destroyed && !outer.writableEnded) outer.end();
      });
      const facts = d.facts.get(resolvePoolKey(outerKey).id);
      return {
        stream: t,
        counts: tunnelCounts(t),
        peerIdentity: inner.peerIdentity.toString(),
        sni: facts?.sni,
        alpn: `${facts?.alpn ?? '?'} / ${String(inner.tls.alpn)}`,
        authority: route.authority,
        baggage,
        traceparent: String(t.requestHeaders.traceparent ?? ''),
        hboneAddr: `${gw.address}:${gw.port}`,
      };
    }
  }
}

function protocolOut(route: Route): string {
  switch (route.kind) {
    case 'plaintext':
      return 'TCP (plaintext)';
    case 'hbone':
      return 'HBONE (mTLS 1.3 + h2 CONNECT)';
    case 'waypoint':
      return `HBONE to waypoint ${route.waypoint.name}`;
    case 'double-hbone':
      return `double HBONE via ${route.gateway.name}`;
  }
}

function destinationOf(route: Route): { workload?: WorkloadConfig; service?: string } {
  const service = route.service?.hostname;
  if (route.kind === 'hbone' || route.kind === 'plaintext') return { workload: route.workload, service };
  return { service };
}

/** Opens one outbound connection for a local workload; logs it when it ends or fails. */
export async function openOutbound(d: OutboundDeps, req: OutboundRequest): Promise<Outbound> {
  const started = performance.now();
  const { src } = req;
  const baseFacts: Omit<TcpLabelFacts, 'mtls'> = {
    reporter: 'source',
    srcWorkload: src.name,
    srcNamespace: src.namespace,
    srcPrincipal: src.identity,
    srcCluster: src.cluster,
  };
  let route: Route | undefined;
  try {
    route = d.router.route(req.dst, {
      from: d.name,
      network: d.network,
      ...(req.viaWaypoint ? { viaWaypoint: req.viaWaypoint } : {}),
    });
    const opened = await openRoute(d, req, route);
    const dst = destinationOf(route);
    const facts: TcpLabelFacts = {
      ...baseFacts,
      dstWorkload: dst.workload?.name,
      dstNamespace: dst.workload?.namespace ?? route.service?.namespace,
      dstPrincipal: opened.peerIdentity,
      dstService: dst.service,
      dstCluster: dst.workload?.cluster,
      mtls: route.kind !== 'plaintext',
    };
    d.tcp.opened(facts);
    const r = route;
    const done = new Promise<void>((resolve) => {
      let streamError: Error | undefined;
      opened.stream.on('error', (err: Error) => {
        streamError ??= err;
      });
      opened.stream.once('close', () => {
        const { toDst, toSrc } = opened.counts();
        d.tcp.closed(facts, toDst, toSrc);
        d.accessLog.record({
          direction: 'outbound',
          src: { addr: req.srcAddr, identity: src.identity, workload: src.name, namespace: src.namespace },
          dst: {
            addr:
              r.kind === 'plaintext' ? `${r.address.host}:${r.address.port}` : (opened.authority ?? r.asked),
            hboneAddr: opened.hboneAddr,
            service: dst.service,
            identity: opened.peerIdentity,
            workload: dst.workload?.name,
            namespace: dst.workload?.namespace,
          },
          bytesSent: toDst,
          bytesRecv: toSrc,
          durationMs: performance.now() - started,
          ...(streamError ? { error: streamError.message } : {}),
        });
        d.observations.add({
          component: d.name,
          role: 'node-proxy outbound',
          protocolIn: `TCP (${req.capturedBy})`,
          protocolOut: protocolOut(r),
          ...(opened.peerIdentity ? { peerIdentity: opened.peerIdentity } : {}),
          ...(opened.sni ? { sni: opened.sni } : {}),
          ...(opened.alpn ? { alpn: opened.alpn } : {}),
          ...(opened.authority ? { authority: opened.authority } : {}),
          ...(opened.baggage !== undefined ? { baggage: opened.baggage } : {}),
          ...(r.kind === 'double-hbone' ? { forwardedNetwork: d.network } : {}),
          ...(opened.traceparent ? { traceparent: opened.traceparent } : {}),
          bytesToDst: toDst,
          bytesToSrc: toSrc,
          ...(streamError ? { error: streamError.message } : {}),
        });
        resolve();
      });
    });
    return { stream: opened.stream, route, done };
  } catch (err) {
    const e = err instanceof Error ? err : new Error(String(err));
    const flag =
      err instanceof HopError || (err as { responseFlag?: unknown }).responseFlag !== undefined
        ? String((err as { responseFlag: string }).responseFlag)
        : 'CONNECT';
    const dst = route ? destinationOf(route) : {};
    d.tcp.failed(
      {
        ...baseFacts,
        dstWorkload: dst.workload?.name,
        dstNamespace: dst.workload?.namespace,
        dstService: dst.service,
        mtls: route !== undefined && route.kind !== 'plaintext',
      },
      flag,
    );
    d.accessLog.record({
      direction: 'outbound',
      src: { addr: req.srcAddr, identity: src.identity, workload: src.name, namespace: src.namespace },
      dst: { addr: `${req.dst.host}:${req.dst.port}`, service: dst.service },
      bytesSent: 0,
      bytesRecv: 0,
      durationMs: performance.now() - started,
      error: e.message,
    });
    d.observations.add({
      component: d.name,
      role: 'node-proxy outbound',
      protocolIn: `TCP (${req.capturedBy})`,
      protocolOut: route ? protocolOut(route) : 'none',
      bytesToDst: 0,
      bytesToSrc: 0,
      error: e.message,
    });
    throw e;
  }
}
