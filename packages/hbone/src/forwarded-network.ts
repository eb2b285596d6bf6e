/**
 * The `x-forwarded-network` header and the names of the HBONE request headers.
 *
 * ztunnel (src/proxy/outbound.rs `create_hbone_request`) adds `x-forwarded-network: <its own
 * network>` only on the inner CONNECT of double HBONE; the receiver (src/proxy/inbound.rs) treats
 * the request as coming through a gateway when the value differs, ignoring ASCII case, from its
 * own network name. (Comments in ztunnel call it `x-istio-origin-network`; the constant, and so
 * the wire name, is `x-forwarded-network`.)
 *
 * Istio network names come from the `topology.istio.io/network` label or meshNetworks keys:
 * ztunnel puts no rule on them. A value here must be an RFC 9110 section 5.6.2 `token` (visible
 * ASCII without delimiters, which every Kubernetes label value is) of at most 256 characters, so
 * that it can never smuggle a list separator or whitespace into a header.
 */

import { InvalidForwardedNetworkError } from './codec-errors.js';

export const BAGGAGE_HEADER = 'baggage';
export const FORWARDED_HEADER = 'forwarded';
export const TRACEPARENT_HEADER = 'traceparent';
export const X_FORWARDED_NETWORK_HEADER = 'x-forwarded-network';

/**
 * The order ztunnel writes the CONNECT request headers in (src/proxy/outbound.rs
 * `create_hbone_request`); `x-forwarded-network` only on the inner CONNECT of double HBONE.
 */
export const HBONE_REQUEST_HEADER_ORDER = Object.freeze([
  BAGGAGE_HEADER,
  FORWARDED_HEADER,
  TRACEPARENT_HEADER,
  X_FORWARDED_NETWORK_HEADER,
] as const);

export const MAX_NETWORK_NAME_LENGTH = 256;

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** True when `name` is a usable network name (see the module comment). */
export function isValidNetworkName(name: string): boolean {
  return typeof name === 'string' && name.length <= MAX_NETWORK_NAME_LENGTH && TOKEN.test(name);
}

/**
 * Reads an `x-forwarded-network` value. Surrounding OWS is removed (RFC 9110 section 5.5: it is
 * not part of a field value); case is kept.
 * @throws InvalidForwardedNetworkError.
 */
export function parseForwardedNetwork(value: string): string {
  if (typeof value !== 'string') throw new InvalidForwardedNetworkError('not a string', String(value));
  const name = value.replace(/^[ \t]+|[ \t]+$/g, '');
  if (name === '') throw new InvalidForwardedNetworkError('empty', value);
  if (name.length > MAX_NETWORK_NAME_LENGTH) {
    throw new InvalidForwardedNetworkError(`longer than ${MAX_NETWORK_NAME_LENGTH} characters`, value);
  }
  if (!TOKEN.test(name)) throw new InvalidForwardedNetworkError('not an RFC 9110 token', value);
  return name;
}

/**
 * Writes a network name as the header value (the name itself, as ztunnel does).
 * @throws InvalidForwardedNetworkError.
 */
export function formatForwardedNetwork(network: string): string {
  if (!isValidNetworkName(network)) {
    throw new InvalidForwardedNetworkError(
      'network name must be an RFC 9110 token of 1..256 characters',
      network,
    );
  }
  return network;
}

/** ztunnel's comparison of the header with the local network: ASCII case-insensitive. */
export function isSameNetwork(a: string, b: string): boolean {
  return (
    a.length === b.length &&
    a.replace(/[A-Z]/g, (c) => c.toLowerCase()) === b.replace(/[A-Z]/g, (c) => c.toLowerCase())
  );
}
