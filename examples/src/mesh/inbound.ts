/**
 * A node proxy's inbound half (ztunnel's inbound, in-pod mode): for each local HBONE workload, an
 * HBONE listener on the workload's IP (:15008) presenting that workload's identity, and a
 * plaintext listener (:15006) that accepts only under PERMISSIVE peer authentication.
 *
 * For each CONNECT: the authority must name this workload (its IP, or a service it backs by VIP
 * or hostname: double HBONE), then authorisation in ztunnel's order with the peer's verified
 * identity and the original source address (`forwarded`, else the connection's), then a TCP
 * connection from the proxy's IP to the workload, 200 only once it is up, and the bytes joined.
 * Open connections are kept so a policy change can re-check them and close those now denied.
 */
import type * as net from 'node:net';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import {
  createServer,
  formatBaggage,
  type HboneServer,
  type HboneTunnel,
  type IncomingTunnel,
  joinTunnel,
  type WorkloadAttributes,
} from '@hbone/hbone';
import { authorizeIf, type SpiffeId } from '@hbone/spiffe';
import type { AccessLog } from './access-log.js';
import { type AuthzRequest, evaluate, policiesForWorkload } from './authorization.js';
import type { PeerAuthenticationMode, PolicyConfig, Timeouts, WorkloadConfig } from './config.js';
import { HboneListener } from './hbone-listener.js';
import type { Observations } from './hop-observation.js';
import type { TcpLabelFacts, TcpMetrics } from './metrics.js';
import { workloadAttributes } from './outbound.js';
import { inboundTargetPort, type Router } from './routing.js';
import { dialTcp, joinSockets, splitHostPort } from './tcp.js';
import type { IdentitySource } from './workload-identities.js';

export interface InboundDeps {
  /** The proxy's name, for logs. */
  readonly name: string;
  /** The proxy's own IP: deliveries to workloads come from it (the seed: "src = ztunnel's pod IP"). */
  readonly address: string;
  readonly router: Router;
  readonly identities: IdentitySource;
  readonly policies: () => readonly PolicyConfig[];
  readonly mode: () => PeerAuthenticationMode;
  /** Trust domains whose peers may connect. */
  readonly acceptTrustDomains: readonly string[];
  readonly timeouts: Timeouts;
  readonly accessLog: AccessLog;
  readonly tcp: TcpMetrics;
  readonly observations: Observations;
}

/** An inbound connection in flight, re-checked when policies change. */
interface OpenConnection {
  readonly workload: WorkloadConfig;
  readonly request: AuthzRequest;
  closeReason: string | undefined;
  kill(reason: string): void;
}

interface WorkloadListeners {
  readonly workload: WorkloadConfig;
  readonly server: HboneServer;
  readonly listener: HboneListener;
  readonly plaintext: NetServer | undefined;
}

const STRICT_POLICY = 'istio-system/istio_converted_static_strict';

function ipOf(addr: string | undefined): string | undefined {
  return addr === undefined ? undefined : splitHostPort(addr).host;
}

export class Inbound {
  readonly #deps: InboundDeps;
  readonly #listeners: WorkloadListeners[] = [];
  readonly #open = new Set<OpenConnection>();
  readonly #plainSockets = new Set<Socket>();
  #closing: Promise<void> | undefined;

  private constructor(deps: InboundDeps) {
    this.#deps = deps;
  }

  /** Starts the listeners of `workloads` (their SVIDs must be prepared). */
  static async start(deps: InboundDeps, workloads: readonly WorkloadConfig[]): Promise<Inbound> {
    const inbound = new Inbound(deps);
    try {
      for (const w of workloads) await inbound.#startWorkload(w);
    } catch (err) {
      await inbound.close();
      throw err;
    }
    return inbound;
  }

  /** Live inbound HBONE connections on all listeners. */
  get hboneConnections(): number {
    return this.#listeners.reduce((n, l) => n + l.server.connections, 0);
  }

  /** Inbound connections delivering bytes right now. */
  get openConnections(): number {
    return this.#open.size;
  }

  /** Where each workload's listeners are. */
  listeners(): Array<{ workload: string; hbone: string; plaintext: string | undefined }> {
    return this.#listeners.map((l) => ({
      workload: `${l.workload.namespace}/${l.workload.name}`,
      hbone: `${l.workload.ip}:${l.listener.port}`,
      plaintext: l.plaintext ? `${l.workload.ip}:${l.workload.inboundPort}` : undefined,
    }));
  }

  /** Re-checks open connections against the current policies; closes the denied. Returns how many. */
  recheck(): number {
    let closed = 0;
    for (const c of [...this.#open]) {
      const d = evaluate(policiesForWorkload(this.#deps.policies(), c.workload), c.request);
      if (!d.allowed) {
        closed++;
        c.kill(`connection closed due to policy rejection after a policy change: ${d.reason}`);
      }
    }
    return closed;
  }

  async #startWorkload(w: WorkloadConfig): Promise<void> {
    const d = this.#deps;
    const accept = new Set(d.acceptTrustDomains);
    const creds = d.identities.credentials(w.identity);
    let listener: HboneListener | undefined;
    const server = createServer({
      ...creds,
      authorizer: authorizeIf((id: SpiffeId) => accept.has(id.trustDomain.name)),
      handler: (t) => this.#onTunnel(w, t, listener),
      handshakeTimeoutMs: d.timeouts.handshakeMs,
      handlerTimeoutMs: d.timeouts.connectMs + 1000,
    });
    server.on('clientError', (err: Error) => {
      d.accessLog.record({
        direction: 'inbound',
        src: {},
        dst: {
          addr: `${w.ip}:${w.hbonePort}`,
          identity: w.identity,
          workload: w.name,
          namespace: w.namespace,
        },
        bytesSent: 0,
        bytesRecv: 0,
        durationMs: 0,
        error: `TLS/identity: ${err.message}`,
      });
      d.tcp.failed(
        {
          reporter: 'destination',
          dstWorkload: w.name,
          dstNamespace: w.namespace,
          dstPrincipal: w.identity,
          mtls: true,
        },
        (err as { responseFlag?: string }).responseFlag ?? 'TLS_FAILURE',
      );
    });
    try {
      listener = await HboneListener.listen({ host: w.ip, port: w.hbonePort, server });
    } catch (err) {
      await server.destroy();
      throw err;
    }
    let plaintext: NetServer | undefined;
    try {
      plaintext = await this.#listenPlaintext(w);
    } catch (err) {
      await listener.close();
      await server.destroy();
      throw err;
    }
    this.#listeners.push({ workload: w, server, listener, plaintext });
  }

  #facts(
    w: WorkloadConfig,
    srcIdentity: SpiffeId | undefined,
    src: WorkloadAttributes,
    mtls: boolean,
  ): TcpLabelFacts {
    return {
      reporter: 'destination',
      srcWorkload: src.workloadName ?? srcIdentity?.istio()?.serviceAccount,
      srcNamespace: src.namespace ?? srcIdentity?.istio()?.namespace,
      srcPrincipal: srcIdentity?.toString(),
      srcCluster: src.clusterName,
      dstWorkload: w.name,
      dstNamespace: w.namespace,
      dstPrincipal: w.identity,
      dstService: this.#deps.router.serviceOf(w)?.hostname,
      dstCluster: w.cluster,
      mtls,
    };
  }

  async #onTunnel(w: WorkloadConfig, t: IncomingTunnel, listener: HboneListener | undefined): Promise<void> {
    const d = this.#deps;
    const started = performance.now();
    const peer = t.peerIdentity;
    const remote = `${t.connection.remoteAddress}:${t.connection.remotePort}`;
    let srcAddr = remote;
    try {
      srcAddr = t.forwarded()[0]?.for ?? remote;
    } catch {
      // a malformed `forwarded` is ignored, as ztunnel ignores unreadable headers
    }
    let forwardedNetwork: string | undefined;
    try {
      forwardedNetwork = t.forwardedNetwork();
    } catch {
      forwardedNetwork = undefined;
    }
    const hello = listener?.hello(t.connection.remoteAddress, t.connection.remotePort);
    const baggage = t.baggageHeader;
    let attrs: WorkloadAttributes = {};
    try {
      attrs = t.workload();
    } catch {
      // ztunnel treats unreadable baggage as empty
    }
    const facts = this.#facts(w, peer, attrs, true);
    const port = inboundTargetPort(d.router, w, t.authority);
    const service =
      t.authority.kind === 'hostname' ? t.authority.host : d.router.serviceByVip(t.authority.host)?.hostname;
    const dstAddr = `${w.ip}:${port ?? t.authority.port}`;
    const record = (bytesToDst: number, bytesToSrc: number, error: string | undefined): void => {
      d.accessLog.record({
        direction: 'inbound',
        src: {
          addr: srcAddr,
          identity: peer.toString(),
          ...(facts.srcWorkload ? { workload: facts.srcWorkload } : {}),
          ...(facts.srcNamespace ? { namespace: facts.srcNamespace } : {}),
        },
        dst: {
          addr: dstAddr,
          hboneAddr: `${w.ip}:${w.hbonePort}`,
          ...(service ? { service } : {}),
          identity: w.identity,
          workload: w.name,
          namespace: w.namespace,
        },
        bytesSent: bytesToDst,
        bytesRecv: bytesToSrc,
        durationMs: performance.now() - started,
        ...(error ? { error } : {}),
      });
      d.observations.add({
        component: d.name,
        role: 'node-proxy inbound',
        protocolIn: forwardedNetwork ? `HBONE (inner, from network ${forwardedNetwork})` : 'HBONE',
        protocolOut: 'TCP (plaintext to the pod)',
        peerIdentity: peer.toString(),
        ...(hello?.sni ? { sni: hello.sni } : {}),
        ...(hello ? { alpn: hello.alpn.join(',') } : {}),
        authority: t.authorityString,
        baggage,
        ...(forwardedNetwork ? { forwardedNetwork } : {}),
        ...(typeof t.headers.traceparent === 'string' ? { traceparent: t.headers.traceparent } : {}),
        bytesToDst,
        bytesToSrc,
        ...(error ? { error } : {}),
      });
    };
    const fail = (status: number, flag: string, error: string): void => {
      if (t.decision === 'pending' && !t.stream.closed) t.reject(status);
      d.tcp.failed(facts, flag);
      record(0, 0, error);
    };
    if (port === undefined) {
      fail(
        503,
        'CONNECT',
        `unknown destination ${t.authorityString}: not ${w.namespace}/${w.name} nor a service it backs`,
      );
      return;
    }
    const request: AuthzRequest = { srcIdentity: peer, srcIp: ipOf(srcAddr), dstPort: port };
    const decision = evaluate(policiesForWorkload(d.policies(), w), request);
    if (!decision.allowed) {
      fail(401, 'DENY', `connection closed due to policy rejection: ${decision.reason}`);
      return;
    }
    let upstream: net.Socket;
    try {
      upstream = await dialTcp(w.ip, port, { localAddress: d.address, timeoutMs: d.timeouts.connectMs });
    } catch (err) {
      fail(503, 'CONNECT', `upstream connect to ${w.ip}:${port} failed: ${(err as Error).message}`);
      return;
    }
    if (t.decision !== 'pending' || t.stream.closed) {
      upstream.destroy();
      return;
    }
    let tunnel: HboneTunnel;
    try {
      tunnel = t.accept({ baggage: formatBaggage(workloadAttributes(w)) });
    } catch {
      upstream.destroy();
      return;
    }
    d.tcp.opened(facts);
    const open: OpenConnection = {
      workload: w,
      request,
      closeReason: undefined,
      kill(reason) {
        open.closeReason ??= reason;
        tunnel.destroy(new Error(reason));
        upstream.destroy();
      },
    };
    this.#open.add(open);
    const r = await joinTunnel(tunnel, upstream);
    this.#open.delete(open);
    const flag = open.closeReason ? 'DENY' : '-';
    d.tcp.closed(facts, r.bytesFromTunnel, r.bytesToTunnel, flag);
    record(r.bytesFromTunnel, r.bytesToTunnel, open.closeReason ?? r.error?.message);
  }

  async #listenPlaintext(w: WorkloadConfig): Promise<NetServer> {
    const server = createNetServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#onPlaintext(w, s));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(w.inboundPort, w.ip, () => {
        server.removeListener('error', reject);
        resolve();
      });
    });
    return server;
  }

  #onPlaintext(w: WorkloadConfig, s: Socket): void {
    const d = this.#deps;
    const started = performance.now();
    this.#plainSockets.add(s);
    s.once('close', () => this.#plainSockets.delete(s));
    s.on('error', () => {});
    const srcAddr = `${s.remoteAddress}:${s.remotePort}`;
    const facts = this.#facts(w, undefined, {}, false);
    const dstAddr = `${w.ip}:${w.appPort ?? w.inboundPort}`;
    const record = (toDst: number, toSrc: number, error: string | undefined): void => {
      d.accessLog.record({
        direction: 'inbound',
        src: { addr: srcAddr },
        dst: { addr: dstAddr, identity: w.identity, workload: w.name, namespace: w.namespace },
        bytesSent: toDst,
        bytesRecv: toSrc,
        durationMs: performance.now() - started,
        ...(error ? { error } : {}),
      });
    };
    const refuse = (flag: string, error: string): void => {
      s.resetAndDestroy();
      d.tcp.failed(facts, flag);
      record(0, 0, error);
    };
    if (d.mode() === 'STRICT') {
      refuse(
        'DENY',
        `plaintext connection rejected: peer authentication is STRICT (mTLS required); explicitly denied by: ${STRICT_POLICY}`,
      );
      return;
    }
    if (w.appPort === undefined) {
      refuse('CONNECT', `no appPort configured for ${w.namespace}/${w.name}: nowhere to deliver plaintext`);
      return;
    }
    const appPort = w.appPort;
    const request: AuthzRequest = { srcIdentity: undefined, srcIp: s.remoteAddress, dstPort: appPort };
    const decision = evaluate(policiesForWorkload(d.policies(), w), request);
    if (!decision.allowed) {
      refuse('DENY', `connection closed due to policy rejection: ${decision.reason}`);
      return;
    }
    s.pause();
    dialTcp(w.ip, appPort, { localAddress: d.address, timeoutMs: d.timeouts.connectMs }).then(
      async (upstream) => {
        if (s.destroyed) {
          upstream.destroy();
          return;
        }
        d.tcp.opened(facts);
        const open: OpenConnection = {
          workload: w,
          request,
          closeReason: undefined,
          kill(reason) {
            open.closeReason ??= reason;
            s.destroy();
            upstream.destroy();
          },
        };
        this.#open.add(open);
        const r = await joinSockets(s, upstream);
        this.#open.delete(open);
        d.tcp.closed(facts, r.aToB, r.bToA, open.closeReason ? 'DENY' : '-');
        record(r.aToB, r.bToA, open.closeReason ?? r.error?.message);
      },
      (err: unknown) =>
        refuse('CONNECT', `upstream connect to ${w.ip}:${appPort} failed: ${(err as Error).message}`),
    );
  }

  /** Closes every listener and connection. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      for (const c of [...this.#open]) c.kill('proxy shutting down');
      for (const s of this.#plainSockets) s.destroy();
      await Promise.all(
        this.#listeners.flatMap((l) => [
          l.listener.close(),
          l.server.destroy(),
          l.plaintext
            ? new Promise<void>((r) => {
                l.plaintext?.close(() => r());
              })
            : Promise.resolve(),
        ]),
      );
    })();
    return this.#closing;
  }
}
