import { SpiffeId } from '@hbone/spiffe';

/**
 * What decides which connection may carry a tunnel (HBONE-WIRE.md "Pooling", ztunnel
 * `src/proxy/pool.rs` WorkloadKey): who we are, whom we expect, where we dial, and from which
 * source IP. The application port is never part of it: it rides in `:authority`.
 */
export interface PoolKey {
  /** Our identity on this connection (the source workload's). */
  readonly source: SpiffeId | string;
  /** The identities the peer may present; order and duplicates do not matter. */
  readonly destinations: Iterable<SpiffeId | string>;
  /** Where to dial: the peer's HBONE address (`10.0.0.2:15008`, `[fd00::2]:15008`). */
  readonly address: { readonly host: string; readonly port: number };
  /** Source IP to bind, when the proxy dials as the workload's IP. */
  readonly sourceIp?: string;
}

/** A key in canonical string form plus its parts, validated once. */
export interface ResolvedPoolKey {
  readonly id: string;
  readonly source: SpiffeId;
  readonly destinations: readonly SpiffeId[];
  readonly address: { readonly host: string; readonly port: number };
  readonly sourceIp: string | undefined;
}

const toId = (v: SpiffeId | string): SpiffeId => (typeof v === 'string' ? SpiffeId.parse(v) : v);

/**
 * Canonical form: destinations sorted and deduplicated, so {a,b} and [b,a,a] share connections.
 * Throws `InvalidSpiffeIdError` for a malformed identity.
 */
export function resolvePoolKey(key: PoolKey): ResolvedPoolKey {
  const source = toId(key.source);
  const dests = new Map<string, SpiffeId>();
  for (const d of key.destinations) {
    const id = toId(d);
    dests.set(id.toString(), id);
  }
  const destinations = [...dests.keys()].sort().map((k) => dests.get(k)!);
  const { host, port } = key.address;
  const id = JSON.stringify([source.toString(), destinations.map(String), host, port, key.sourceIp ?? '']);
  return { id, source, destinations, address: { host, port }, sourceIp: key.sourceIp };
}
