/**
 * Typed errors of the pure HBONE header codecs (authority, baggage, forwarded, traceparent,
 * x-forwarded-network) and of the TLS ClientHello reader.
 *
 * One class per codec, each with a stable `code` (the undici / Node convention): callers branch on
 * `err.code` or `instanceof`, never on message text. `reason` is a short human explanation; `input`
 * is the rejected value, truncated so that a hostile header cannot flood a log.
 */

export type CodecErrorCode =
  | 'ERR_INVALID_AUTHORITY'
  | 'ERR_INVALID_BAGGAGE'
  | 'ERR_INVALID_FORWARDED'
  | 'ERR_INVALID_TRACEPARENT'
  | 'ERR_INVALID_FORWARDED_NETWORK'
  | 'ERR_INVALID_CLIENT_HELLO'
  | 'ERR_CLIENT_HELLO_TIMEOUT';

/** Longest excerpt of a rejected input kept on an error (characters). */
const MAX_INPUT_EXCERPT = 256;

function excerpt(input: string): string {
  return input.length > MAX_INPUT_EXCERPT ? `${input.slice(0, MAX_INPUT_EXCERPT)}...` : input;
}

/** Base of the codec errors: a stable `code`, a `reason`, and `name` equal to the class name. */
export abstract class CodecError extends Error {
  abstract readonly code: CodecErrorCode;
  /** Why the input was rejected, e.g. "port out of range". */
  readonly reason: string;
  /** The rejected input (truncated to 256 characters), or '' when there is none to show. */
  readonly input: string;
  constructor(what: string, reason: string, input: string, detail = '') {
    super(
      input === ''
        ? `${what}: ${reason}${detail}`
        : `${what}: ${reason}${detail}: ${JSON.stringify(excerpt(input))}`,
    );
    this.name = new.target.name;
    this.reason = reason;
    this.input = excerpt(input);
  }
}

/** A CONNECT `:authority` that is not `ipv4:port`, `[ipv6]:port` or `hostname:port`. */
export class InvalidAuthorityError extends CodecError {
  readonly code = 'ERR_INVALID_AUTHORITY' as const;
  constructor(reason: string, input: string) {
    super('invalid authority', reason, input);
  }
}

/** A `baggage` header that breaks the W3C Baggage grammar or the configured limits. */
export class InvalidBaggageError extends CodecError {
  readonly code = 'ERR_INVALID_BAGGAGE' as const;
  constructor(reason: string, input: string) {
    super('invalid baggage', reason, input);
  }
}

/** A `forwarded` header (RFC 7239) or a node/value in it that does not parse. */
export class InvalidForwardedError extends CodecError {
  readonly code = 'ERR_INVALID_FORWARDED' as const;
  constructor(reason: string, input: string) {
    super('invalid forwarded', reason, input);
  }
}

/** A `traceparent` header that breaks W3C Trace Context section 3.2. */
export class InvalidTraceparentError extends CodecError {
  readonly code = 'ERR_INVALID_TRACEPARENT' as const;
  constructor(reason: string, input: string) {
    super('invalid traceparent', reason, input);
  }
}

/** An `x-forwarded-network` value that is not a valid network name. */
export class InvalidForwardedNetworkError extends CodecError {
  readonly code = 'ERR_INVALID_FORWARDED_NETWORK' as const;
  constructor(reason: string, input: string) {
    super('invalid x-forwarded-network', reason, input);
  }
}

/**
 * The first bytes of a connection are not a well-formed TLS ClientHello: not TLS at all, a wrong
 * record or handshake type, a length that overruns or exceeds a limit, the connection ended early.
 * `input` is empty (the bytes are binary); `offset` is where in the buffer the problem was seen.
 */
export class InvalidClientHelloError extends CodecError {
  readonly code = 'ERR_INVALID_CLIENT_HELLO' as const;
  /** Byte offset in the inspected buffer at which the problem was detected (-1 when not applicable). */
  readonly offset: number;
  constructor(reason: string, offset = -1) {
    super('invalid TLS ClientHello', reason, '', offset >= 0 ? ` (at byte ${offset})` : '');
    this.offset = offset;
  }
}

/** No complete ClientHello arrived within the allowed time. */
export class ClientHelloTimeoutError extends CodecError {
  readonly code = 'ERR_CLIENT_HELLO_TIMEOUT' as const;
  readonly timeoutMs: number;
  constructor(timeoutMs: number) {
    super('TLS ClientHello', `not received within ${timeoutMs} ms`, '');
    this.timeoutMs = timeoutMs;
  }
}
