/**
 * The mesh configuration: what Istio's control plane would push to every component (clusters,
 * workloads, services, east-west gateways, waypoints, authorisation policies, peer
 * authentication), plus the section that says which component this process is (`proxy`,
 * `gateway` or `waypoint`) and where its credentials come from. Read from YAML
 * (`parseConfigYaml`) or built as an object (`validateConfig`); either way every field is checked
 * once, here, and a mistake is a `ConfigError` naming the field's path (`mesh.workloads[2].ip`).
 *
 * ```yaml
 * mesh:
 *   clusters:
 *     - { name: cluster-east, network: network-east, trustDomain: east.local }
 *   workloads:
 *     - { name: cart, namespace: payments, serviceAccount: cart, ip: 127.30.1.10,
 *         node: node-east-1, cluster: cluster-east, protocol: HBONE }
 *   services:
 *     - { name: checkout, namespace: payments, vip: 127.30.2.1,
 *         ports: [{ port: 8080, targetPort: 8080 }], endpoints: [checkout] }
 *   gateways:
 *     - { name: eastwest-west, network: network-west, address: 127.40.0.5,
 *         identity: spiffe://west.local/ns/istio-eastwest/sa/eastwest }
 *   policies:
 *     - { name: checkout-allow, namespace: payments, action: ALLOW,
 *         rules: [{ from: [{ principals: [east.local/ns/payments/sa/cart] }] }] }
 * proxy: { name: ztunnel-east, node: node-east-1, address: 127.30.0.2, cluster: cluster-east }
 * credentials: { ca: ./ca-east, bundles: [{ trustDomain: west.local, file: ./ca-west/bundle.pem }] }
 * ```
 */
import { isIP } from 'node:net';
import { isValidHostname, isValidNetworkName } from '@hbone/hbone';
import { SpiffeId, TrustDomain } from '@hbone/spiffe';
import { parse as parseYaml, YAMLParseError } from 'yaml';

/** ztunnel's ports (HBONE-WIRE.md "Ports"). */
export const DEFAULT_PORTS = Object.freeze({
  outbound: 15001,
  hbone: 15008,
  inbound: 15006,
  socks5: 15080,
  metrics: 15020,
  readiness: 15021,
  admin: 15000,
});

/**
 * The proxy's own listeners, on its own address. HBONE (15008) and plaintext inbound (15006) are
 * per workload, on the workload's IP (ztunnel's in-pod mode: the listener sits in the pod's
 * network namespace and so presents that pod's identity): see `WorkloadConfig.hbonePort`.
 */
export type PortName = 'outbound' | 'socks5' | 'metrics' | 'readiness' | 'admin';
/** A port number, or `null` to not listen at all. */
export type Ports = { readonly [K in PortName]: number | null };
const PROXY_PORT_NAMES: readonly PortName[] = ['outbound', 'socks5', 'metrics', 'readiness', 'admin'];

export type Protocol = 'HBONE' | 'TCP';
export type PeerAuthenticationMode = 'STRICT' | 'PERMISSIVE';
export type PolicyAction = 'ALLOW' | 'DENY';
export type WorkloadKind = 'deployment' | 'cronjob' | 'pod' | 'job';

export interface ClusterConfig {
  readonly name: string;
  readonly network: string;
  readonly trustDomain: string;
}

export interface WorkloadConfig {
  readonly name: string;
  readonly namespace: string;
  readonly serviceAccount: string;
  /** Its "pod IP": a loopback address here. */
  readonly ip: string;
  readonly node: string;
  readonly cluster: string;
  /** From the cluster unless given. */
  readonly network: string;
  /** From the cluster unless given. */
  readonly trustDomain: string;
  /** `spiffe://<trustDomain>/ns/<namespace>/sa/<serviceAccount>`. */
  readonly identity: string;
  readonly locality: string | undefined;
  /** HBONE: its node proxy captures it; TCP: out of the mesh, reached in plaintext. */
  readonly protocol: Protocol;
  readonly labels: Readonly<Record<string, string>>;
  readonly workloadKind: WorkloadKind;
  /** Where its node proxy accepts HBONE for it (ztunnel in-pod mode: the pod's IP, port 15008). */
  readonly hbonePort: number;
  /** Where its node proxy accepts plaintext for it under PERMISSIVE (the pod's IP, port 15006). */
  readonly inboundPort: number;
  /** The port plaintext on `inboundPort` is delivered to (nothing redirects here: no original port). */
  readonly appPort: number | undefined;
}

export interface ServicePort {
  readonly port: number;
  readonly targetPort: number;
  readonly name: string | undefined;
}

export interface ServiceConfig {
  readonly name: string;
  readonly namespace: string;
  /** Default `<name>.<namespace>.svc.cluster.local`. */
  readonly hostname: string;
  readonly vip: string;
  readonly ports: readonly ServicePort[];
  /** Workload names (in the service's namespace, or `namespace/name`). */
  readonly endpoints: readonly string[];
  /** The waypoint that handles this service's traffic, by name. */
  readonly waypoint: string | undefined;
}

export interface GatewayConfig {
  readonly name: string;
  readonly network: string;
  /** The address other networks dial (the LoadBalancer IP). */
  readonly address: string;
  readonly port: number;
  readonly identity: string;
  /** SNI clients send: none (ztunnel's default) or the source workload's SPIFFE ID (the seed). */
  readonly sni: 'none' | 'source-identity';
}

export interface WaypointConfig {
  readonly name: string;
  readonly network: string;
  readonly address: string;
  readonly port: number;
  readonly identity: string;
}

/** Istio's string match: exact, `prefix*`, `*suffix`, or `*` (any, but present). */
export type StringMatch = string;

export interface PolicySource {
  readonly principals?: readonly StringMatch[];
  readonly notPrincipals?: readonly StringMatch[];
  readonly namespaces?: readonly StringMatch[];
  readonly notNamespaces?: readonly StringMatch[];
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
}

export interface PolicyOperation {
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  /** L7 (waypoint only; ztunnel never matches an ALLOW rule with L7 fields). */
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly StringMatch[];
  readonly notPaths?: readonly StringMatch[];
}

export interface PolicyRule {
  /** Sources, OR-ed; absent = any source. */
  readonly from?: readonly PolicySource[];
  /** Operations, OR-ed; absent = any operation. */
  readonly to?: readonly PolicyOperation[];
}

export interface PolicyConfig {
  readonly name: string;
  /** The policy's namespace; `istio-system` (the root namespace) makes it mesh-wide. */
  readonly namespace: string;
  /** Workloads it applies to in its namespace; absent = all of them. */
  readonly selector: { readonly matchLabels: Readonly<Record<string, string>> } | undefined;
  /** Attach to a service's waypoint instead of the workloads (enforced by the waypoint). */
  readonly targetRef: { readonly kind: 'Service'; readonly name: string } | undefined;
  readonly action: PolicyAction;
  /** A match needs one rule to match; no rules never match (an ALLOW with none denies all). */
  readonly rules: readonly PolicyRule[];
}

export interface MeshConfig {
  readonly clusters: readonly ClusterConfig[];
  readonly workloads: readonly WorkloadConfig[];
  readonly services: readonly ServiceConfig[];
  readonly gateways: readonly GatewayConfig[];
  readonly waypoints: readonly WaypointConfig[];
  readonly policies: readonly PolicyConfig[];
  readonly peerAuthentication: PeerAuthenticationMode;
}

export interface ProxySection {
  readonly name: string;
  readonly node: string;
  readonly address: string;
  readonly cluster: string;
  readonly network: string;
  readonly ports: Ports;
  /** Overrides the mesh-wide mode for this proxy's workloads. */
  readonly peerAuthentication: PeerAuthenticationMode | undefined;
  /** Trust domains whose clients its HBONE listeners accept. Default: every cluster's. */
  readonly acceptTrustDomains: readonly string[] | undefined;
  readonly timeouts: Timeouts;
  /** Pool idle timeout for outbound HBONE connections. */
  readonly poolIdleMs: number;
}

export interface Timeouts {
  /** TCP + TLS + SETTINGS for outbound HBONE; also the plaintext connect deadline. */
  readonly handshakeMs: number;
  /** Wait for a CONNECT's answer. */
  readonly connectMs: number;
}

export interface GatewaySection {
  readonly name: string;
  /** Trust domains whose clients it accepts (the seed: "checks the trust domain is one it accepts"). */
  readonly acceptTrustDomains: readonly string[];
  /** 'require': read the ClientHello first and refuse a connection whose SNI is not a SPIFFE ID of an accepted trust domain. */
  readonly sniRouting: 'off' | 'require';
  /** Where it listens when that differs from the address peers dial (a load balancer in front). */
  readonly listen?: { readonly address: string; readonly port: number };
  readonly adminPort: number | null;
  readonly metricsPort: number | null;
  readonly timeouts: Timeouts;
}

export interface WaypointSection {
  readonly name: string;
  readonly acceptTrustDomains: readonly string[] | undefined;
  readonly adminPort: number | null;
  readonly metricsPort: number | null;
  readonly timeouts: Timeouts;
}

export interface CredentialsConfig {
  /** A CA directory (`hbone ca init`): the process signs its identities with it, as istiod would. */
  readonly ca: string;
  /** Other trust domains' bundles (federation). */
  readonly bundles: readonly { readonly trustDomain: string; readonly file: string }[];
}

export type ComponentConfig =
  | {
      readonly kind: 'proxy';
      readonly mesh: MeshConfig;
      readonly proxy: ProxySection;
      readonly credentials: CredentialsConfig | undefined;
    }
  | {
      readonly kind: 'gateway';
      readonly mesh: MeshConfig;
      readonly gateway: GatewaySection;
      readonly credentials: CredentialsConfig | undefined;
    }
  | {
      readonly kind: 'waypoint';
      readonly mesh: MeshConfig;
      readonly waypoint: WaypointSection;
      readonly credentials: CredentialsConfig | undefined;
    };

/** A configuration mistake; `path` names the field (`mesh.services[0].ports[1].port`). */
export class ConfigError extends Error {
  readonly code = 'ERR_MESH_CONFIG' as const;
  readonly path: string;
  constructor(path: string, message: string, options?: { cause?: unknown }) {
    super(path ? `${path}: ${message}` : message, options);
    this.name = 'ConfigError';
    this.path = path;
  }
}

// ---- a small typed reader over unknown input -------------------------------------------------

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, path: string, allowed: readonly string[]): Obj {
  if (!isObj(v)) throw new ConfigError(path, `must be a mapping, got ${describe(v)}`);
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) {
      throw new ConfigError(path, `unknown field "${k}" (known: ${allowed.join(', ')})`);
    }
  }
  return v;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'string' ? `"${v}"` : typeof v;
}

function str(o: Obj, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) {
    throw new ConfigError(`${path}.${key}`, `must be a non-empty string, got ${describe(v)}`);
  }
  return v;
}

function optStr(o: Obj, key: string, path: string): string | undefined {
  return o[key] === undefined ? undefined : str(o, key, path);
}

function list(o: Obj, key: string, path: string): unknown[] {
  const v = o[key];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ConfigError(`${path}.${key}`, `must be a list, got ${describe(v)}`);
  return v;
}

function strList(o: Obj, key: string, path: string): string[] | undefined {
  if (o[key] === undefined) return undefined;
  return list(o, key, path).map((v, i) => {
    if (typeof v !== 'string' || v.length === 0) {
      throw new ConfigError(`${path}.${key}[${i}]`, `must be a non-empty string, got ${describe(v)}`);
    }
    return v;
  });
}

function port(v: unknown, path: string, allowNull = false): number | null {
  if (v === null && allowNull) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    throw new ConfigError(
      path,
      `must be a port number 1..65535${allowNull ? ' or null' : ''}, got ${describe(v)}`,
    );
  }
  return v;
}

function optPort(o: Obj, key: string, path: string, dflt: number): number {
  return o[key] === undefined ? dflt : (port(o[key], `${path}.${key}`) as number);
}

function duration(o: Obj, key: string, path: string, dflt: number): number {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
    throw new ConfigError(`${path}.${key}`, `must be a positive number of milliseconds, got ${describe(v)}`);
  }
  return v;
}

function oneOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[], dflt?: T): T {
  const v = o[key];
  if (v === undefined && dflt !== undefined) return dflt;
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw new ConfigError(`${path}.${key}`, `must be one of ${values.join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

function ip(o: Obj, key: string, path: string): string {
  const v = str(o, key, path);
  if (isIP(v) === 0) throw new ConfigError(`${path}.${key}`, `must be an IP address, got "${v}"`);
  if (v === '0.0.0.0' || v === '::') {
    throw new ConfigError(`${path}.${key}`, 'must be a specific address (never the wildcard)');
  }
  return v;
}

function spiffe(o: Obj, key: string, path: string): string {
  const v = str(o, key, path);
  try {
    return SpiffeId.parse(v).toString();
  } catch (err) {
    throw new ConfigError(`${path}.${key}`, `not a SPIFFE ID: ${(err as Error).message}`, { cause: err });
  }
}

function trustDomain(v: string, path: string): string {
  try {
    return TrustDomain.parse(v).name;
  } catch (err) {
    throw new ConfigError(path, `not a trust domain: ${(err as Error).message}`, { cause: err });
  }
}

function network(v: string, path: string): string {
  if (!isValidNetworkName(v)) throw new ConfigError(path, `not a valid network name: "${v}"`);
  return v;
}

function labels(o: Obj, key: string, path: string): Record<string, string> {
  const v = o[key];
  if (v === undefined) return {};
  if (!isObj(v)) throw new ConfigError(`${path}.${key}`, `must be a mapping of strings, got ${describe(v)}`);
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== 'string') throw new ConfigError(`${path}.${key}.${k}`, 'must be a string');
    out[k] = val;
  }
  return out;
}

function unique<T>(items: readonly T[], keyOf: (t: T) => string, path: string, what: string): void {
  const seen = new Map<string, number>();
  items.forEach((t, i) => {
    const k = keyOf(t);
    const prev = seen.get(k);
    if (prev !== undefined)
      throw new ConfigError(`${path}[${i}]`, `duplicate ${what} "${k}" (also at [${prev}])`);
    seen.set(k, i);
  });
}

// ---- sections -----------------------------------------------------------------------------------

function readClusters(o: Obj, path: string): ClusterConfig[] {
  const out = list(o, 'clusters', path).map((v, i) => {
    const p = `${path}.clusters[${i}]`;
    const c = obj(v, p, ['name', 'network', 'trustDomain']);
    return {
      name: str(c, 'name', p),
      network: network(str(c, 'network', p), `${p}.network`),
      trustDomain: trustDomain(str(c, 'trustDomain', p), `${p}.trustDomain`),
    };
  });
  unique(out, (c) => c.name, `${path}.clusters`, 'cluster');
  return out;
}

const WORKLOAD_FIELDS = [
  'name',
  'namespace',
  'serviceAccount',
  'ip',
  'node',
  'cluster',
  'network',
  'trustDomain',
  'locality',
  'protocol',
  'labels',
  'workloadKind',
  'hbonePort',
  'inboundPort',
  'appPort',
];

function readWorkloads(o: Obj, path: string, clusters: readonly ClusterConfig[]): WorkloadConfig[] {
  const out = list(o, 'workloads', path).map((v, i): WorkloadConfig => {
    const p = `${path}.workloads[${i}]`;
    const w = obj(v, p, WORKLOAD_FIELDS);
    const clusterName = str(w, 'cluster', p);
    const cluster = clusters.find((c) => c.name === clusterName);
    if (!cluster) throw new ConfigError(`${p}.cluster`, `unknown cluster "${clusterName}"`);
    const namespace = str(w, 'namespace', p);
    const serviceAccount = str(w, 'serviceAccount', p);
    const td = trustDomain(optStr(w, 'trustDomain', p) ?? cluster.trustDomain, `${p}.trustDomain`);
    let identity: string;
    try {
      identity = SpiffeId.fromIstio(td, namespace, serviceAccount).toString();
    } catch (err) {
      throw new ConfigError(p, `namespace/serviceAccount do not make a SPIFFE ID: ${(err as Error).message}`);
    }
    return {
      name: str(w, 'name', p),
      namespace,
      serviceAccount,
      ip: ip(w, 'ip', p),
      node: str(w, 'node', p),
      cluster: cluster.name,
      network: network(optStr(w, 'network', p) ?? cluster.network, `${p}.network`),
      trustDomain: td,
      identity,
      locality: optStr(w, 'locality', p),
      protocol: oneOf<Protocol>(w, 'protocol', p, ['HBONE', 'TCP'], 'HBONE'),
      labels: labels(w, 'labels', p),
      workloadKind: oneOf<WorkloadKind>(
        w,
        'workloadKind',
        p,
        ['deployment', 'cronjob', 'pod', 'job'],
        'deployment',
      ),
      hbonePort: optPort(w, 'hbonePort', p, DEFAULT_PORTS.hbone),
      inboundPort: optPort(w, 'inboundPort', p, DEFAULT_PORTS.inbound),
      appPort: w.appPort === undefined ? undefined : (port(w.appPort, `${p}.appPort`) as number),
    };
  });
  unique(out, (w) => `${w.namespace}/${w.name}`, `${path}.workloads`, 'workload');
  unique(out, (w) => w.ip, `${path}.workloads`, 'workload IP');
  return out;
}

function readServices(o: Obj, path: string, workloads: readonly WorkloadConfig[]): ServiceConfig[] {
  const out = list(o, 'services', path).map((v, i): ServiceConfig => {
    const p = `${path}.services[${i}]`;
    const s = obj(v, p, ['name', 'namespace', 'hostname', 'vip', 'ports', 'endpoints', 'waypoint']);
    const name = str(s, 'name', p);
    const namespace = str(s, 'namespace', p);
    const hostname = optStr(s, 'hostname', p) ?? `${name}.${namespace}.svc.cluster.local`;
    if (!isValidHostname(hostname))
      throw new ConfigError(`${p}.hostname`, `not a valid hostname: "${hostname}"`);
    const ports = list(s, 'ports', p).map((pv, j) => {
      const pp = `${p}.ports[${j}]`;
      const po = obj(pv, pp, ['port', 'targetPort', 'name']);
      const svcPort = port(po.port, `${pp}.port`) as number;
      return {
        port: svcPort,
        targetPort: optPort(po, 'targetPort', pp, svcPort),
        name: optStr(po, 'name', pp),
      };
    });
    if (ports.length === 0) throw new ConfigError(`${p}.ports`, 'a service needs at least one port');
    unique(ports, (x) => String(x.port), `${p}.ports`, 'port');
    const endpoints = strList(s, 'endpoints', p) ?? [];
    endpoints.forEach((e, j) => {
      const [ns, n] = e.includes('/') ? e.split('/', 2) : [namespace, e];
      if (!workloads.some((w) => w.namespace === ns && w.name === n)) {
        throw new ConfigError(`${p}.endpoints[${j}]`, `unknown workload "${ns}/${n}"`);
      }
    });
    return {
      name,
      namespace,
      hostname,
      vip: ip(s, 'vip', p),
      ports,
      endpoints: endpoints.map((e) => (e.includes('/') ? e : `${namespace}/${e}`)),
      waypoint: optStr(s, 'waypoint', p),
    };
  });
  unique(out, (s) => `${s.namespace}/${s.name}`, `${path}.services`, 'service');
  unique(out, (s) => s.hostname, `${path}.services`, 'hostname');
  unique(out, (s) => s.vip, `${path}.services`, 'VIP');
  return out;
}

function readGateways(o: Obj, path: string): GatewayConfig[] {
  const out = list(o, 'gateways', path).map((v, i) => {
    const p = `${path}.gateways[${i}]`;
    const g = obj(v, p, ['name', 'network', 'address', 'port', 'identity', 'sni']);
    return {
      name: str(g, 'name', p),
      network: network(str(g, 'network', p), `${p}.network`),
      address: ip(g, 'address', p),
      port: optPort(g, 'port', p, DEFAULT_PORTS.hbone),
      identity: spiffe(g, 'identity', p),
      sni: oneOf<'none' | 'source-identity'>(g, 'sni', p, ['none', 'source-identity'], 'none'),
    };
  });
  unique(out, (g) => g.name, `${path}.gateways`, 'gateway');
  unique(out, (g) => g.network, `${path}.gateways`, 'gateway for network');
  return out;
}

function readWaypoints(o: Obj, path: string): WaypointConfig[] {
  const out = list(o, 'waypoints', path).map((v, i) => {
    const p = `${path}.waypoints[${i}]`;
    const w = obj(v, p, ['name', 'network', 'address', 'port', 'identity']);
    return {
      name: str(w, 'name', p),
      network: network(str(w, 'network', p), `${p}.network`),
      address: ip(w, 'address', p),
      port: optPort(w, 'port', p, DEFAULT_PORTS.hbone),
      identity: spiffe(w, 'identity', p),
    };
  });
  unique(out, (w) => w.name, `${path}.waypoints`, 'waypoint');
  return out;
}

function readSource(v: unknown, p: string): PolicySource {
  const s = obj(v, p, [
    'principals',
    'notPrincipals',
    'namespaces',
    'notNamespaces',
    'ipBlocks',
    'notIpBlocks',
  ]);
  const out: Record<string, readonly string[]> = {};
  for (const k of Object.keys(s)) {
    const l = strList(s, k, p);
    if (l) out[k] = l.map((x) => (k.endsWith('rincipals') ? x.replace(/^spiffe:\/\//, '') : x));
  }
  for (const k of ['ipBlocks', 'notIpBlocks']) {
    (out[k] ?? []).forEach((b, j) => {
      const [addr, bits] = b.split('/');
      const n = bits === undefined ? 32 : Number(bits);
      if (isIP(addr ?? '') !== 4 || !Number.isInteger(n) || n < 0 || n > 32) {
        throw new ConfigError(`${p}.${k}[${j}]`, `must be an IPv4 address or CIDR, got "${b}"`);
      }
    });
  }
  return out;
}

function readOperation(v: unknown, p: string): PolicyOperation {
  const t = obj(v, p, ['ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths']);
  const out: { -readonly [K in keyof PolicyOperation]: PolicyOperation[K] } = {};
  for (const k of ['ports', 'notPorts'] as const) {
    if (t[k] !== undefined) out[k] = list(t, k, p).map((x, j) => port(x, `${p}.${k}[${j}]`) as number);
  }
  for (const k of ['methods', 'notMethods', 'paths', 'notPaths'] as const) {
    const l = strList(t, k, p);
    if (l) out[k] = l;
  }
  return out;
}

export function readPolicy(v: unknown, p: string): PolicyConfig {
  const o = obj(v, p, ['name', 'namespace', 'selector', 'targetRef', 'action', 'rules']);
  let selector: PolicyConfig['selector'];
  if (o.selector !== undefined) {
    const s = obj(o.selector, `${p}.selector`, ['matchLabels']);
    selector = { matchLabels: labels(s, 'matchLabels', `${p}.selector`) };
  }
  let targetRef: PolicyConfig['targetRef'];
  if (o.targetRef !== undefined) {
    const t = obj(o.targetRef, `${p}.targetRef`, ['kind', 'name']);
    targetRef = {
      kind: oneOf<'Service'>(t, 'kind', `${p}.targetRef`, ['Service']),
      name: str(t, 'name', `${p}.targetRef`),
    };
    if (selector) throw new ConfigError(p, 'give selector or targetRef, not both');
  }
  const rules = list(o, 'rules', p).map((rv, i) => {
    const rp = `${p}.rules[${i}]`;
    const r = obj(rv, rp, ['from', 'to']);
    const rule: { from?: PolicySource[]; to?: PolicyOperation[] } = {};
    if (r.from !== undefined)
      rule.from = list(r, 'from', rp).map((s, j) => readSource(s, `${rp}.from[${j}]`));
    if (r.to !== undefined) rule.to = list(r, 'to', rp).map((t, j) => readOperation(t, `${rp}.to[${j}]`));
    return rule;
  });
  return {
    name: str(o, 'name', p),
    namespace: str(o, 'namespace', p),
    selector,
    targetRef,
    action: oneOf<PolicyAction>(o, 'action', p, ['ALLOW', 'DENY'], 'ALLOW'),
    rules,
  };
}

export function readMesh(v: unknown, path = 'mesh'): MeshConfig {
  const o = obj(v, path, [
    'clusters',
    'workloads',
    'services',
    'gateways',
    'waypoints',
    'policies',
    'peerAuthentication',
  ]);
  const clusters = readClusters(o, path);
  const workloads = readWorkloads(o, path, clusters);
  const services = readServices(o, path, workloads);
  const gateways = readGateways(o, path);
  const waypoints = readWaypoints(o, path);
  services.forEach((s, i) => {
    if (s.waypoint !== undefined && !waypoints.some((w) => w.name === s.waypoint)) {
      throw new ConfigError(`${path}.services[${i}].waypoint`, `unknown waypoint "${s.waypoint}"`);
    }
  });
  const policies = list(o, 'policies', path).map((pv, i) => readPolicy(pv, `${path}.policies[${i}]`));
  unique(policies, (p) => `${p.namespace}/${p.name}`, `${path}.policies`, 'policy');
  let peerAuthentication: PeerAuthenticationMode = 'STRICT';
  if (o.peerAuthentication !== undefined) {
    const pa = obj(o.peerAuthentication, `${path}.peerAuthentication`, ['mode']);
    peerAuthentication = oneOf(pa, 'mode', `${path}.peerAuthentication`, ['STRICT', 'PERMISSIVE']);
  }
  return { clusters, workloads, services, gateways, waypoints, policies, peerAuthentication };
}

function readTimeouts(o: Obj, path: string): Timeouts {
  if (o.timeouts === undefined) return { handshakeMs: 10_000, connectMs: 10_000 };
  const t = obj(o.timeouts, `${path}.timeouts`, ['handshakeMs', 'connectMs']);
  return {
    handshakeMs: duration(t, 'handshakeMs', `${path}.timeouts`, 10_000),
    connectMs: duration(t, 'connectMs', `${path}.timeouts`, 10_000),
  };
}

function readPorts(o: Obj, path: string): Ports {
  const out: Record<string, number | null> = {};
  for (const k of PROXY_PORT_NAMES) out[k] = DEFAULT_PORTS[k];
  if (o.ports === undefined) return out as Ports;
  const po = obj(o.ports, `${path}.ports`, PROXY_PORT_NAMES);
  for (const [k, v] of Object.entries(po)) out[k] = port(v, `${path}.ports.${k}`, true);
  return out as Ports;
}

function readTrustDomains(o: Obj, key: string, path: string): string[] | undefined {
  return strList(o, key, path)?.map((t, i) => trustDomain(t, `${path}.${key}[${i}]`));
}

function readProxy(v: unknown, mesh: MeshConfig): ProxySection {
  const p = 'proxy';
  const o = obj(v, p, [
    'name',
    'node',
    'address',
    'cluster',
    'ports',
    'peerAuthentication',
    'acceptTrustDomains',
    'timeouts',
    'poolIdleMs',
  ]);
  const clusterName = str(o, 'cluster', p);
  const cluster = mesh.clusters.find((c) => c.name === clusterName);
  if (!cluster) throw new ConfigError(`${p}.cluster`, `unknown cluster "${clusterName}"`);
  return {
    name: str(o, 'name', p),
    node: str(o, 'node', p),
    address: ip(o, 'address', p),
    cluster: cluster.name,
    network: cluster.network,
    ports: readPorts(o, p),
    peerAuthentication:
      o.peerAuthentication === undefined
        ? undefined
        : oneOf<PeerAuthenticationMode>(o, 'peerAuthentication', p, ['STRICT', 'PERMISSIVE']),
    acceptTrustDomains: readTrustDomains(o, 'acceptTrustDomains', p),
    timeouts: readTimeouts(o, p),
    poolIdleMs: duration(o, 'poolIdleMs', p, 15_000),
  };
}

function readGatewaySection(v: unknown, mesh: MeshConfig): GatewaySection {
  const p = 'gateway';
  const o = obj(v, p, [
    'name',
    'acceptTrustDomains',
    'sniRouting',
    'listen',
    'adminPort',
    'metricsPort',
    'timeouts',
  ]);
  const name = str(o, 'name', p);
  let listen: GatewaySection['listen'];
  if (o.listen !== undefined) {
    const l = obj(o.listen, `${p}.listen`, ['address', 'port']);
    listen = {
      address: ip(l, 'address', `${p}.listen`),
      port: optPort(l, 'port', `${p}.listen`, DEFAULT_PORTS.hbone),
    };
  }
  if (!mesh.gateways.some((g) => g.name === name)) {
    throw new ConfigError(`${p}.name`, `no gateway "${name}" in mesh.gateways`);
  }
  const accept = readTrustDomains(o, 'acceptTrustDomains', p);
  if (!accept || accept.length === 0) {
    throw new ConfigError(
      `${p}.acceptTrustDomains`,
      'list the trust domains whose peers this gateway accepts',
    );
  }
  return {
    name,
    acceptTrustDomains: accept,
    sniRouting: oneOf<'off' | 'require'>(o, 'sniRouting', p, ['off', 'require'], 'off'),
    ...(listen ? { listen } : {}),
    adminPort: o.adminPort === undefined ? null : port(o.adminPort, `${p}.adminPort`, true),
    metricsPort: o.metricsPort === undefined ? null : port(o.metricsPort, `${p}.metricsPort`, true),
    timeouts: readTimeouts(o, p),
  };
}

function readWaypointSection(v: unknown, mesh: MeshConfig): WaypointSection {
  const p = 'waypoint';
  const o = obj(v, p, ['name', 'acceptTrustDomains', 'adminPort', 'metricsPort', 'timeouts']);
  const name = str(o, 'name', p);
  if (!mesh.waypoints.some((w) => w.name === name)) {
    throw new ConfigError(`${p}.name`, `no waypoint "${name}" in mesh.waypoints`);
  }
  return {
    name,
    acceptTrustDomains: readTrustDomains(o, 'acceptTrustDomains', p),
    adminPort: o.adminPort === undefined ? null : port(o.adminPort, `${p}.adminPort`, true),
    metricsPort: o.metricsPort === undefined ? null : port(o.metricsPort, `${p}.metricsPort`, true),
    timeouts: readTimeouts(o, p),
  };
}

function readCredentials(v: unknown): CredentialsConfig | undefined {
  if (v === undefined) return undefined;
  const p = 'credentials';
  const o = obj(v, p, ['ca', 'bundles']);
  return {
    ca: str(o, 'ca', p),
    bundles: list(o, 'bundles', p).map((b, i) => {
      const bp = `${p}.bundles[${i}]`;
      const bo = obj(b, bp, ['trustDomain', 'file']);
      return {
        trustDomain: trustDomain(str(bo, 'trustDomain', bp), `${bp}.trustDomain`),
        file: str(bo, 'file', bp),
      };
    }),
  };
}

/** Validates a whole component configuration given as an object (parsed YAML or JSON). */
export function validateConfig(input: unknown): ComponentConfig {
  const o = obj(input, '', ['mesh', 'proxy', 'gateway', 'waypoint', 'credentials']);
  const roles = (['proxy', 'gateway', 'waypoint'] as const).filter((k) => o[k] !== undefined);
  if (roles.length !== 1) {
    throw new ConfigError(
      '',
      `give exactly one of proxy, gateway, waypoint (got ${roles.join(', ') || 'none'})`,
    );
  }
  const mesh = readMesh(o.mesh ?? {});
  const credentials = readCredentials(o.credentials);
  switch (roles[0]) {
    case 'proxy':
      return { kind: 'proxy', mesh, proxy: readProxy(o.proxy, mesh), credentials };
    case 'gateway':
      return { kind: 'gateway', mesh, gateway: readGatewaySection(o.gateway, mesh), credentials };
    default:
      return { kind: 'waypoint', mesh, waypoint: readWaypointSection(o.waypoint, mesh), credentials };
  }
}

/** Parses YAML text, then validates it. YAML syntax errors become ConfigErrors with a line number. */
export function parseConfigYaml(text: string, source = 'config'): ComponentConfig {
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    const line = err instanceof YAMLParseError ? err.linePos?.[0]?.line : undefined;
    throw new ConfigError(
      '',
      `${source}${line ? `:${line}` : ''}: invalid YAML: ${(err as Error).message.split('\n')[0]}`,
      { cause: err },
    );
  }
  return validateConfig(doc);
}

/** A proxy section for programmatic use: everything but the essentials defaulted. */
export function proxySection(
  mesh: MeshConfig,
  p: {
    name: string;
    node: string;
    address: string;
    cluster: string;
    ports?: Partial<Ports>;
    peerAuthentication?: PeerAuthenticationMode;
    acceptTrustDomains?: readonly string[];
    timeouts?: Partial<Timeouts>;
    poolIdleMs?: number;
  },
): ProxySection {
  return readProxy(
    {
      ...p,
      ...(p.ports ? { ports: p.ports } : {}),
      ...(p.acceptTrustDomains ? { acceptTrustDomains: [...p.acceptTrustDomains] } : {}),
    },
    mesh,
  );
}
