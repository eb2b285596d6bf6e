import { h2CodeName } from './settings.js';

/**
 * ztunnel's response flags (`src/proxy/metrics.rs`): the label a failed connection carries in
 * `istio_tcp_connections_failed_total` and the access log. Every HBONE error names one.
 */
export type ResponseFlag =
  | 'DENY'
  | 'CONNECT'
  | 'TLS_FAILURE'
  | 'H2_HANDSHAKE_FAILURE'
  | 'NETWORK_POLICY'
  | 'IDENTITY_ERROR';

export type HboneErrorCode =
  | 'ERR_HBONE_REFUSED'
  | 'ERR_HBONE_DENIED'
  | 'ERR_HBONE_UPSTREAM_UNAVAILABLE'
  | 'ERR_HBONE_BAD_REQUEST'
  | 'ERR_HBONE_STREAM_RESET'
  | 'ERR_HBONE_IDENTITY_MISMATCH'
  | 'ERR_HBONE_TLS'
  | 'ERR_HBONE_H2_HANDSHAKE'
  | 'ERR_HBONE_TIMEOUT'
  | 'ERR_HBONE_SESSION_CLOSED'
  | 'ERR_HBONE_TUNNEL_CLOSED'
  | 'ERR_HBONE_CONNECT'
  | 'ERR_HBONE_INVALID_OPTION';

/** Base of every error this package raises: a stable `code` and the ztunnel response flag. */
export abstract class HboneError extends Error {
  abstract readonly code: HboneErrorCode;
  abstract readonly responseFlag: ResponseFlag;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The peer answered the CONNECT with a non-200 status not covered by a narrower class (e.g. 421). */
export class ConnectRefusedError extends HboneError {
  readonly code: HboneErrorCode = 'ERR_HBONE_REFUSED';
  readonly responseFlag: ResponseFlag = 'CONNECT';
  readonly status: number;
  constructor(status: number, message?: string) {
    super(
      message ??
        `CONNECT refused with status ${status}${status === 421 ? ' (misdirected: version skew?)' : ''}`,
    );
    this.status = status;
  }
}

/**
 * 401: the destination's authorisation policy denied this source. The destination logs DENY;
 * the source, which only sees a failed CONNECT, labels it CONNECT as ztunnel's client does.
 */
export class ConnectDeniedError extends ConnectRefusedError {
  override readonly code: HboneErrorCode = 'ERR_HBONE_DENIED';
  constructor(status = 401) {
    super(status, `CONNECT denied by authorisation policy (status ${status})`);
  }
}

/** 503: the destination could not reach the target (unknown, or the upstream dial failed). */
export class UpstreamUnavailableError extends ConnectRefusedError {
  override readonly code: HboneErrorCode = 'ERR_HBONE_UPSTREAM_UNAVAILABLE';
  constructor(status = 503) {
    super(status, `upstream unavailable (status ${status})`);
  }
}

/** 400: the peer found our CONNECT malformed (method or authority). */
export class BadRequestError extends ConnectRefusedError {
  override readonly code: HboneErrorCode = 'ERR_HBONE_BAD_REQUEST';
  constructor(status = 400) {
    super(status, `CONNECT rejected as a bad request (status ${status})`);
  }
}

/** Maps a CONNECT response status to its error (200 never reaches here). */
export function errorForStatus(status: number): ConnectRefusedError {
  if (status === 401 || status === 403) return new ConnectDeniedError(status);
  if (status === 503) return new UpstreamUnavailableError(status);
  if (status === 400) return new BadRequestError(status);
  return new ConnectRefusedError(status);
}

/** The peer reset the stream (RST_STREAM) with a code other than NO_ERROR/CANCEL. */
export class StreamResetError extends HboneError {
  readonly code = 'ERR_HBONE_STREAM_RESET' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
  /** The HTTP/2 error code (RFC 9113 section 7). */
  readonly h2Code: number;
  constructor(h2Code: number, when: 'before response' | 'during transfer' = 'during transfer') {
    super(`stream reset by peer ${when} with ${h2CodeName(h2Code)}`);
    this.h2Code = h2Code;
  }
}

/** The peer's verified SPIFFE identity is not one we expect (or not authorised). */
export class IdentityMismatchError extends HboneError {
  readonly code = 'ERR_HBONE_IDENTITY_MISMATCH' as const;
  readonly responseFlag: ResponseFlag = 'IDENTITY_ERROR';
}

/** The TLS handshake failed: connection reset, alert, bad certificate, untrusted chain. */
export class TlsHandshakeError extends HboneError {
  readonly code = 'ERR_HBONE_TLS' as const;
  readonly responseFlag: ResponseFlag = 'TLS_FAILURE';
}

/** TLS succeeded but HTTP/2 did not start: wrong ALPN, bad preface, no SETTINGS. */
export class H2HandshakeError extends HboneError {
  readonly code = 'ERR_HBONE_H2_HANDSHAKE' as const;
  readonly responseFlag: ResponseFlag = 'H2_HANDSHAKE_FAILURE';
}

/** The `phase` of a timeout on the TCP connect itself. */
export const TCP_CONNECT_PHASE = 'the TCP connect';

/** A wait ran out: dial, handshake, CONNECT response, upstream connect or a pool queue. */
export class HboneTimeoutError extends HboneError {
  readonly code = 'ERR_HBONE_TIMEOUT' as const;
  /** NETWORK_POLICY for a TCP connect that never completed (ztunnel `src/proxy/metrics.rs`: a
   * silently dropped SYN is what a network policy looks like), CONNECT otherwise. */
  readonly responseFlag: ResponseFlag;
  /** What we were waiting for, e.g. 'tcp connect', 'tls handshake', 'connect response'. */
  readonly phase: string;
  readonly timeoutMs: number;
  constructor(phase: string, timeoutMs: number) {
    super(`timed out after ${timeoutMs} ms waiting for ${phase}`);
    this.phase = phase;
    this.responseFlag = phase === TCP_CONNECT_PHASE ? 'NETWORK_POLICY' : 'CONNECT';
    this.timeoutMs = timeoutMs;
  }
}

/** The session is closed, draining (GOAWAY) or failed its liveness PING: it takes no new tunnels. */
export class SessionClosedError extends HboneError {
  readonly code = 'ERR_HBONE_SESSION_CLOSED' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
}

/** A write after the tunnel was closed by the peer (END_STREAM is not a reason: reset is). */
export class TunnelClosedError extends HboneError {
  readonly code = 'ERR_HBONE_TUNNEL_CLOSED' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
}

/** A TCP-level failure reaching the peer (refused, unreachable, reset before TLS). */
export class ConnectError extends HboneError {
  readonly code = 'ERR_HBONE_CONNECT' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
  /** The system error code (`ECONNREFUSED`, ...), when there is one. */
  readonly syscallCode: string | undefined;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    const c = (options?.cause as { code?: unknown } | undefined)?.code;
    this.syscallCode = typeof c === 'string' ? c : undefined;
  }
}

/** An option failed validation at construction. */
export class InvalidOptionError extends HboneError {
  readonly code = 'ERR_HBONE_INVALID_OPTION' as const;
  readonly responseFlag: ResponseFlag = 'CONNECT';
}
