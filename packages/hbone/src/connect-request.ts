import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { type Authority, formatAuthority, parseAuthority } from './authority.js';
import { formatBaggage, type WorkloadAttributes } from './baggage.js';
import { type ForwardedInput, formatForwarded } from './forwarded.js';
import { formatForwardedNetwork } from './forwarded-network.js';
import { formatTraceparent, newTraceparent } from './traceparent.js';

/** What a client asks for when it opens a tunnel. */
export interface TunnelRequest {
  /** Where the peer should connect: `ip:port`, `[ipv6]:port`, or `host:port` (double HBONE). */
  authority: string | Authority;
  /** The source workload's attributes (or a ready header value). Always sent, possibly empty. */
  baggage?: WorkloadAttributes | string;
  /** RFC 7239 `for`/`host`: the original client address, and the service hostname. */
  forwarded?: ForwardedInput | string;
  /** A W3C traceparent; generated per tunnel unless `false` (ztunnel: one per downstream connection). */
  traceparent?: string | false;
  /** `x-forwarded-network`: only on the inner CONNECT of double HBONE. */
  forwardedNetwork?: string;
}

/**
 * Builds the CONNECT request's header list in ztunnel's order (HBONE-WIRE.md "The CONNECT
 * request"): `:method`, `:authority`, then `baggage`, `forwarded`, `traceparent`,
 * `x-forwarded-network`. No `:scheme`, `:path` or `:protocol`. node:http2 keeps object key
 * order and puts pseudo-headers first, so the object's insertion order is the wire order.
 */
export function buildConnectHeaders(req: TunnelRequest): OutgoingHttpHeaders {
  const authority =
    typeof req.authority === 'string'
      ? formatAuthority(parseAuthority(req.authority))
      : formatAuthority(req.authority);
  const headers: OutgoingHttpHeaders = {
    ':method': 'CONNECT',
    ':authority': authority,
    baggage: typeof req.baggage === 'string' ? req.baggage : formatBaggage(req.baggage ?? {}),
  };
  if (req.forwarded !== undefined) {
    headers.forwarded = typeof req.forwarded === 'string' ? req.forwarded : formatForwarded(req.forwarded);
  }
  if (req.traceparent !== false) {
    headers.traceparent = req.traceparent ?? formatTraceparent(newTraceparent());
  }
  if (req.forwardedNetwork !== undefined) {
    headers['x-forwarded-network'] = formatForwardedNetwork(req.forwardedNetwork);
  }
  return headers;
}

/** A header's single value, whatever node:http2 made of it. */
export function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  if (v === undefined) return undefined;
  return Array.isArray(v) ? v.join(',') : String(v);
}
