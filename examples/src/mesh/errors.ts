/**
 * The mesh's failures, each naming the hop where the path broke and the cause, in the words of
 * the first seed's "What goes wrong" section: unreachable (refused), silently dropped (timeout),
 * identity (trust domain or root CA mismatch: not a network problem), version skew (421 or a
 * reset), denied by policy (401), and no route (stale configuration: never a plaintext dial).
 */
import {
  ConnectDeniedError,
  ConnectError,
  ConnectRefusedError,
  H2HandshakeError,
  HboneError,
  HboneTimeoutError,
  IdentityMismatchError,
  type ResponseFlag,
  SessionClosedError,
  StreamResetError,
  TlsHandshakeError,
  UpstreamUnavailableError,
} from '@hbone/hbone';
import { PoolError } from '@hbone/pool';

export type MeshErrorCode = 'ERR_MESH_NO_ROUTE' | 'ERR_MESH_HOP' | 'ERR_MESH_NOT_LOCAL';

/** Why a hop failed, as an operator would file it. */
export type HopCause =
  | 'unreachable'
  | 'timeout'
  | 'identity'
  | 'protocol'
  | 'version-skew'
  | 'denied'
  | 'upstream-unavailable'
  | 'rejected'
  | 'reset'
  | 'closed'
  | 'pool'
  | 'unknown';

/** One hop of a path: who dialled whom, where. */
export interface Hop {
  /** The component that saw the failure (e.g. `ztunnel-east`). */
  readonly from: string;
  /** What it was talking to (e.g. `east-west gateway eastwest-west`). */
  readonly to: string;
  /** `ip:port` dialled, when there is one. */
  readonly address?: string;
}

export function hopText(h: Hop): string {
  return `${h.from} -> ${h.to}${h.address ? ` (${h.address})` : ''}`;
}

export abstract class MeshError extends Error {
  abstract readonly code: MeshErrorCode;
  /** ztunnel's response flag for metrics and access logs. */
  abstract readonly responseFlag: ResponseFlag;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * The source proxy knows no route to the destination: unknown address or hostname (stale
 * configuration), a service without endpoints, a network without a gateway. The connection
 * is refused; the original address is never dialled in plaintext.
 */
export class NoRouteError extends MeshError {
  readonly code = 'ERR_MESH_NO_ROUTE' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
  /** The destination as asked for. */
  readonly destination: string;
  constructor(from: string, destination: string, reason: string) {
    super(`${from}: no route to ${destination}: ${reason} (not dialling it in plaintext)`);
    this.destination = destination;
  }
}

/** The source address is not a workload this proxy serves. */
export class NotLocalWorkloadError extends MeshError {
  readonly code = 'ERR_MESH_NOT_LOCAL' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
  constructor(proxy: string, src: string) {
    super(`${proxy}: ${src} is not a workload on this node: no identity to act as`);
  }
}

/** A hop of the path failed; `cause` is the library's typed error. */
export class HopError extends MeshError {
  readonly code = 'ERR_MESH_HOP' as const;
  readonly responseFlag: ResponseFlag;
  readonly hop: Hop;
  readonly hopCause: HopCause;
  /** The CONNECT status, when the peer answered one. */
  readonly status: number | undefined;
  constructor(hop: Hop, hopCause: HopCause, detail: string, err: unknown) {
    super(`${hopText(hop)}: ${detail}`, { cause: err });
    this.hop = hop;
    this.hopCause = hopCause;
    this.status = err instanceof ConnectRefusedError ? err.status : undefined;
    this.responseFlag =
      err instanceof HboneError || err instanceof PoolError || err instanceof MeshError
        ? err.responseFlag
        : 'CONNECT';
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Names the cause of a failure at `hop` in an operator's words. */
export function classifyHopError(hop: Hop, err: unknown): HopError | MeshError {
  if (err instanceof MeshError) return err;
  if (err instanceof ConnectError) {
    const code = err.syscallCode ?? 'no code';
    const what = code === 'ECONNREFUSED' ? 'connection refused' : 'cannot connect';
    return new HopError(
      hop,
      'unreachable',
      `unreachable: ${what} (${code}): is the port open and exposed?`,
      err,
    );
  }
  if (err instanceof HboneTimeoutError) {
    return new HopError(
      hop,
      'timeout',
      `no answer: ${err.message} (i/o timeout: packets silently dropped by a firewall or load balancer?)`,
      err,
    );
  }
  if (err instanceof IdentityMismatchError) {
    return new HopError(hop, 'identity', `identity error, not a network error: ${err.message}`, err);
  }
  if (err instanceof TlsHandshakeError) {
    return new HopError(
      hop,
      'identity',
      `TLS/identity failure, not a network error (trust domain or root CA mismatch?): ${err.message}`,
      err,
    );
  }
  if (err instanceof H2HandshakeError) {
    return new HopError(hop, 'protocol', `HTTP/2 did not start: ${err.message}`, err);
  }
  if (err instanceof ConnectDeniedError) {
    return new HopError(hop, 'denied', `denied by authorisation policy (${err.status}, DENY)`, err);
  }
  if (err instanceof UpstreamUnavailableError) {
    return new HopError(hop, 'upstream-unavailable', `answered 503: it could not reach the next hop`, err);
  }
  if (err instanceof ConnectRefusedError) {
    if (err.status === 421) {
      return new HopError(
        hop,
        'version-skew',
        'rejected the CONNECT with 421 Misdirected Request: version skew between the proxies?',
        err,
      );
    }
    return new HopError(hop, 'rejected', `rejected the CONNECT with status ${err.status}`, err);
  }
  if (err instanceof StreamResetError) {
    if (/before response/.test(err.message)) {
      return new HopError(
        hop,
        'version-skew',
        `${err.message}: the peer refused the CONNECT (version skew between the proxies?)`,
        err,
      );
    }
    return new HopError(hop, 'reset', err.message, err);
  }
  if (err instanceof SessionClosedError) {
    return new HopError(hop, 'closed', err.message, err);
  }
  if (err instanceof PoolError) {
    return new HopError(hop, 'pool', err.message, err);
  }
  const code = (err as { code?: unknown } | null)?.code;
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') {
    return new HopError(hop, 'unreachable', `unreachable: ${message(err)}`, err);
  }
  if (code === 'ETIMEDOUT') return new HopError(hop, 'timeout', `no answer: ${message(err)}`, err);
  return new HopError(hop, 'unknown', message(err), err);
}
