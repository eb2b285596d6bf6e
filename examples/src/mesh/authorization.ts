/**
 * Authorisation as ztunnel (L4) and a waypoint (L7) evaluate Istio's AuthorizationPolicy
 * (HBONE-WIRE.md "Authorisation"): any DENY match denies; with no ALLOW policy, allow; an ALLOW
 * match allows; otherwise deny. Within a policy, rules are OR-ed; within a rule, `from` and `to`
 * are AND-ed; the sources (or operations) of a list are OR-ed, the fields of one source AND-ed,
 * the values of one field OR-ed. A policy without rules never matches (an ALLOW without rules
 * denies everything it selects).
 *
 * ztunnel cannot see L7: at L4 an ALLOW rule with methods or paths never matches, and a DENY
 * rule is enforced on its L4 parts alone (stricter, never looser), as ztunnel does.
 */
import type { SpiffeId } from '@hbone/spiffe';
import type {
  PolicyConfig,
  PolicyOperation,
  PolicyRule,
  PolicySource,
  ServiceConfig,
  StringMatch,
  WorkloadConfig,
} from './config.js';

/** Istio's root namespace: policies there apply mesh-wide. */
export const ROOT_NAMESPACE = 'istio-system';

export interface AuthzRequest {
  /** The peer's verified identity; undefined for plaintext (PERMISSIVE). */
  readonly srcIdentity: SpiffeId | undefined;
  /** The source IP (the original client's, from `forwarded` when it crossed a gateway). */
  readonly srcIp: string | undefined;
  readonly dstPort: number;
  /** L7, at a waypoint only. */
  readonly method?: string;
  readonly path?: string;
}

export interface AuthzDecision {
  readonly allowed: boolean;
  /** `namespace/name` of the deciding policy, when one decided. */
  readonly policy: string | undefined;
  /** ztunnel's wording: "explicitly denied by: ns/name", "allow policies exist, but none allowed". */
  readonly reason: string;
}

export type EvaluationLayer = 'L4' | 'L7';

/** Policies enforced by a workload's node proxy: its namespace (or the root one), selector matching. */
export function policiesForWorkload(policies: readonly PolicyConfig[], w: WorkloadConfig): PolicyConfig[] {
  return policies.filter(
    (p) =>
      p.targetRef === undefined &&
      (p.namespace === ROOT_NAMESPACE || p.namespace === w.namespace) &&
      (p.selector === undefined ||
        Object.entries(p.selector.matchLabels).every(([k, v]) => w.labels[k] === v)),
  );
}

/** Policies a service's waypoint enforces: those whose targetRef names the service. */
export function policiesForService(policies: readonly PolicyConfig[], s: ServiceConfig): PolicyConfig[] {
  return policies.filter(
    (p) => p.targetRef?.kind === 'Service' && p.targetRef.name === s.name && p.namespace === s.namespace,
  );
}

/** Istio string match: exact, `prefix*`, `*suffix`, or `*` (present and non-empty). */
export function stringMatches(pattern: StringMatch, value: string | undefined): boolean {
  if (value === undefined || value === '') return false;
  if (pattern === '*') return true;
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

function ipv4ToInt(ip: string): number | undefined {
  const parts = ip.split('.');
  if (parts.length !== 4) return undefined;
  let n = 0;
  for (const p of parts) {
    const v = Number(p);
    if (!Number.isInteger(v) || v < 0 || v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

/** `a.b.c.d` or `a.b.c.d/n` contains `ip` (IPv4). */
export function cidrContains(block: string, ip: string | undefined): boolean {
  if (ip === undefined) return false;
  const [addr, bitsText] = block.split('/');
  const bits = bitsText === undefined ? 32 : Number(bitsText);
  const a = ipv4ToInt(addr ?? '');
  const b = ipv4ToInt(ip.replace(/^::ffff:/, ''));
  if (a === undefined || b === undefined) return false;
  if (bits === 0) return true;
  const mask = bits === 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
  return (a & mask) >>> 0 === (b & mask) >>> 0;
}

const anyOf = (patterns: readonly string[] | undefined, value: string | undefined): boolean | undefined =>
  patterns === undefined ? undefined : patterns.some((p) => stringMatches(p, value));

/** AND of the fields present: a positive field must match, a negative one must not. */
function sourceMatches(s: PolicySource, r: AuthzRequest): boolean {
  const principal = r.srcIdentity ? r.srcIdentity.toString().replace(/^spiffe:\/\//, '') : undefined;
  const namespace = r.srcIdentity?.istio()?.namespace;
  const checks: Array<boolean | undefined> = [
    anyOf(s.principals, principal),
    negate(anyOf(s.notPrincipals, principal)),
    anyOf(s.namespaces, namespace),
    negate(anyOf(s.notNamespaces, namespace)),
    s.ipBlocks === undefined ? undefined : s.ipBlocks.some((b) => cidrContains(b, r.srcIp)),
    s.notIpBlocks === undefined ? undefined : !s.notIpBlocks.some((b) => cidrContains(b, r.srcIp)),
  ];
  return checks.every((c) => c !== false);
}

function negate(v: boolean | undefined): boolean | undefined {
  return v === undefined ? undefined : !v;
}

function hasL7(o: PolicyOperation): boolean {
  return (
    o.methods !== undefined || o.notMethods !== undefined || o.paths !== undefined || o.notPaths !== undefined
  );
}

function operationMatches(o: PolicyOperation, r: AuthzRequest, layer: EvaluationLayer): boolean {
  const checks: Array<boolean | undefined> = [
    o.ports === undefined ? undefined : o.ports.includes(r.dstPort),
    o.notPorts === undefined ? undefined : !o.notPorts.includes(r.dstPort),
  ];
  if (layer === 'L7') {
    const method = r.method?.toUpperCase();
    checks.push(
      o.methods === undefined ? undefined : o.methods.some((m) => m.toUpperCase() === method),
      o.notMethods === undefined ? undefined : !o.notMethods.some((m) => m.toUpperCase() === method),
      anyOf(o.paths, r.path),
      negate(anyOf(o.notPaths, r.path)),
    );
  }
  return checks.every((c) => c !== false);
}

function ruleMatches(
  rule: PolicyRule,
  r: AuthzRequest,
  action: PolicyConfig['action'],
  layer: EvaluationLayer,
) {
  // ztunnel: an ALLOW rule it cannot fully evaluate (L7 fields) never matches.
  if (layer === 'L4' && action === 'ALLOW' && rule.to?.some(hasL7)) return false;
  const from = rule.from === undefined || rule.from.some((s) => sourceMatches(s, r));
  const to = rule.to === undefined || rule.to.some((o) => operationMatches(o, r, layer));
  return from && to;
}

function policyMatches(p: PolicyConfig, r: AuthzRequest, layer: EvaluationLayer): boolean {
  return p.rules.some((rule) => ruleMatches(rule, r, p.action, layer));
}

const policyName = (p: PolicyConfig): string => `${p.namespace}/${p.name}`;

/** Evaluates `policies` (already scoped to the destination) in ztunnel's order. */
export function evaluate(
  policies: readonly PolicyConfig[],
  r: AuthzRequest,
  layer: EvaluationLayer = 'L4',
): AuthzDecision {
  for (const p of policies) {
    if (p.action === 'DENY' && policyMatches(p, r, layer)) {
      return { allowed: false, policy: policyName(p), reason: `explicitly denied by: ${policyName(p)}` };
    }
  }
  const allows = policies.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return { allowed: true, policy: undefined, reason: 'no ALLOW policy applies' };
  for (const p of allows) {
    if (policyMatches(p, r, layer)) {
      return { allowed: true, policy: policyName(p), reason: `allowed by: ${policyName(p)}` };
    }
  }
  return {
    allowed: false,
    policy: undefined,
    reason: `allow policies exist, but none allowed (${allows.map(policyName).join(', ')})`,
  };
}
