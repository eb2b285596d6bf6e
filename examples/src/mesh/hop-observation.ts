/**
 * What one component saw of one connection, for the first seed's hop table ("Components on the
 * path"): its protocols in and out, the peer identity it verified, the SNI and ALPN of the TLS it
 * terminated or originated, the CONNECT authority, the baggage, and the bytes it moved. Filled
 * from live objects (sessions, sockets, tunnels, ClientHellos) as the connection runs.
 */
import { EventEmitter } from 'node:events';

export interface HopObservation {
  readonly component: string;
  readonly role: 'node-proxy outbound' | 'node-proxy inbound' | 'east-west gateway' | 'waypoint';
  readonly protocolIn: string;
  readonly protocolOut: string;
  /** The identity this component verified on the TLS it terminated (inbound) or originated (outbound). */
  readonly peerIdentity?: string;
  /** The identity verified on the other side, when there is one (a gateway's upstream has none: it forwards). */
  readonly upstreamIdentity?: string;
  readonly sni?: string;
  readonly alpn?: string;
  readonly authority?: string;
  readonly baggage?: string;
  readonly forwardedNetwork?: string;
  /** Source -> destination bytes this component carried. */
  readonly bytesToDst: number;
  /** Destination -> source bytes. */
  readonly bytesToSrc: number;
  readonly error?: string;
  /** The traceparent of the CONNECT, to tie hops of one connection together. */
  readonly traceparent?: string;
}

/** A bounded list of observations; emits 'observation'. */
export class Observations extends EventEmitter {
  readonly #items: HopObservation[] = [];
  readonly #keep: number;

  constructor(keep = 1000) {
    super();
    this.#keep = keep;
  }

  get items(): readonly HopObservation[] {
    return this.#items;
  }

  add(o: HopObservation): void {
    this.#items.push(o);
    if (this.#items.length > this.#keep) this.#items.shift();
    this.emit('observation', o);
  }
}
