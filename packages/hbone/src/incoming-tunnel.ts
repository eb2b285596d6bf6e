import type { IncomingHttpHeaders, ServerHttp2Stream, ServerStreamResponseOptions } from 'node:http2';
import type { Socket } from 'node:net';
import type { SpiffeId } from '@hbone/spiffe';
import type { Authority } from './authority.js';
import {
  type BaggageEntry,
  formatBaggage,
  parseBaggage,
  parseWorkloadAttributes,
  type WorkloadAttributes,
} from './baggage.js';
import { headerValue } from './connect-request.js';
import { type ForwardedElement, parseForwarded } from './forwarded.js';
import { parseForwardedNetwork } from './forwarded-network.js';
import type { InboundBudget } from './inbound-budget.js';
import { H2_CODES } from './settings.js';
import { parseTraceparent, type Traceparent } from './traceparent.js';
import { HboneTunnel, resetStream } from './tunnel.js';

/**
 * node:http2 adds a `date` header to every response unless `sendDate: false` (an option
 * @types/node does not declare). ztunnel's answers carry `:status` (and baggage) only.
 */
const NO_DATE = { sendDate: false } as ServerStreamResponseOptions;

/** Answers with `:status` alone and END_STREAM: ztunnel's form for every refusal. */
export function respondStatusOnly(stream: ServerHttp2Stream, status: number): void {
  stream.respond({ ':status': status }, { ...NO_DATE, endStream: true });
}

/** Addresses of the HBONE connection a tunnel arrived on. */
export interface ConnectionAddresses {
  readonly localAddress: string | undefined;
  readonly localPort: number | undefined;
  readonly remoteAddress: string | undefined;
  readonly remotePort: number | undefined;
}

export interface AcceptOptions {
  /** The destination's attributes, returned in the 200's `baggage` (ztunnel does this). */
  baggage?: WorkloadAttributes | string;
}

export type TunnelDecision = 'pending' | 'accepted' | 'rejected' | 'reset';

/**
 * A CONNECT that passed validation (method, authority) and waits for the handler's decision:
 * `accept()` answers 200 and returns the tunnel; `reject(status)` answers with `:status` only.
 * Header parsers run lazily and throw their typed errors only when asked.
 */
export class IncomingTunnel {
  /** The client's verified SPIFFE identity (from its certificate's DER). */
  readonly peerIdentity: SpiffeId;
  /** The parsed `:authority`. */
  readonly authority: Authority;
  /** The `:authority` as received. */
  readonly authorityString: string;
  readonly headers: IncomingHttpHeaders;
  /** Header names and values in wire order, flattened `[name, value, ...]` (node's rawHeaders). */
  readonly rawHeaders: readonly string[];
  readonly connection: ConnectionAddresses;
  readonly stream: ServerHttp2Stream;
  #decision: TunnelDecision = 'pending';
  readonly #socket: { readonly destroyed: boolean };
  readonly #inbound: InboundBudget | undefined;

  constructor(
    stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    authority: Authority,
    peer: SpiffeId,
    connection: ConnectionAddresses,
    rawHeaders: readonly string[],
    socket: { readonly destroyed: boolean },
    inbound?: InboundBudget,
  ) {
    this.#socket = socket;
    this.#inbound = inbound;
    this.stream = stream;
    this.headers = headers;
    this.rawHeaders = rawHeaders;
    this.authority = authority;
    this.authorityString = String(headers[':authority']);
    this.peerIdentity = peer;
    this.connection = connection;
  }

  get decision(): TunnelDecision {
    return this.#decision;
  }

  /** The raw `baggage` header ('' when absent). */
  get baggageHeader(): string {
    return headerValue(this.headers, 'baggage') ?? '';
  }

  /** W3C baggage members. Throws InvalidBaggageError on a malformed header. */
  baggage(): BaggageEntry[] {
    return parseBaggage(this.baggageHeader);
  }

  /** The source workload's attributes, from baggage. Throws InvalidBaggageError when malformed. */
  workload(): WorkloadAttributes {
    return parseWorkloadAttributes(this.baggageHeader);
  }

  /** RFC 7239 elements, [] when absent. Throws InvalidForwardedError when malformed. */
  forwarded(): ForwardedElement[] {
    const v = headerValue(this.headers, 'forwarded');
    return v === undefined ? [] : parseForwarded(v);
  }

  /** The W3C traceparent, undefined when absent. Throws InvalidTraceparentError when malformed. */
  traceparent(): Traceparent | undefined {
    const v = headerValue(this.headers, 'traceparent');
    return v === undefined ? undefined : parseTraceparent(v);
  }

  /** `x-forwarded-network` (double HBONE), undefined when absent. */
  forwardedNetwork(): string | undefined {
    const v = headerValue(this.headers, 'x-forwarded-network');
    return v === undefined ? undefined : parseForwardedNetwork(v);
  }

  /** Answers 200 and returns the tunnel. Throws if already decided or the stream is gone. */
  accept(opts: AcceptOptions = {}): HboneTunnel {
    this.#decide('accepted');
    const responseHeaders: Record<string, string | number> = { ':status': 200 };
    if (opts.baggage !== undefined) {
      responseHeaders.baggage = typeof opts.baggage === 'string' ? opts.baggage : formatBaggage(opts.baggage);
    }
    this.stream.respond(responseHeaders, { ...NO_DATE, endStream: false });
    return new HboneTunnel(this.stream, {
      authority: this.authorityString,
      requestHeaders: this.headers,
      responseHeaders: responseHeaders as IncomingHttpHeaders,
      socket: this.#socket,
      inbound: this.#inbound,
    });
  }

  /** Answers with `:status` only and END_STREAM (ztunnel's error form). */
  reject(status: number): void {
    if (!Number.isInteger(status) || status < 300 || status > 599) {
      throw new RangeError(`reject status must be 300..599, got ${status}`);
    }
    this.#decide('rejected');
    respondStatusOnly(this.stream, status);
  }

  /** Resets the stream (RST_STREAM) without an answer. */
  reset(code: number = H2_CODES.CANCEL): void {
    if (this.#decision !== 'pending') return;
    this.#decision = 'reset';
    resetStream(this.stream, code);
  }

  #decide(d: TunnelDecision): void {
    if (this.#decision !== 'pending') throw new Error(`tunnel already ${this.#decision}`);
    if (this.stream.closed || this.stream.destroyed) {
      this.#decision = 'reset';
      throw new Error('the client closed the stream before the answer');
    }
    this.#decision = d;
  }
}

/** Addresses of a connection's socket (undefined for the inner TLS of double HBONE). */
export function connectionAddresses(s: Socket): ConnectionAddresses {
  return {
    localAddress: s?.localAddress,
    localPort: s?.localPort,
    remoteAddress: s?.remoteAddress,
    remotePort: s?.remotePort,
  };
}
