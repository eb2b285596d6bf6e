/**
 * Authorisers decide, after verification, whether a peer's SPIFFE ID may talk to us. They are
 * plain functions `(id) => boolean`, so any predicate is one; the factories below cover the
 * common policies. A `false` becomes a `NotAuthorizedError` in `authorize` and in the TLS layer.
 */
import { NotAuthorizedError } from './errors.js';
import { SpiffeId } from './spiffe-id.js';
import { TrustDomain } from './trust-domain.js';

export type Authorizer = (id: SpiffeId) => boolean;

function toId(id: SpiffeId | string): SpiffeId {
  return typeof id === 'string' ? SpiffeId.parse(id) : id;
}

/** Any verified peer. */
export function authorizeAny(): Authorizer {
  return () => true;
}

/** Exactly this ID. */
export function authorizeId(expected: SpiffeId | string): Authorizer {
  const s = toId(expected).toString();
  return (id) => id.toString() === s;
}

/**
 * One of these IDs (ztunnel's "expected identities"). An empty list authorises nobody: an empty
 * allow-list is a closed door, never an open one.
 */
export function authorizeOneOf(expected: Iterable<SpiffeId | string>): Authorizer {
  const set = new Set<string>();
  for (const e of expected) set.add(toId(e).toString());
  return (id) => set.has(id.toString());
}

/** Any ID of this trust domain. */
export function authorizeMemberOf(trustDomain: TrustDomain | string): Authorizer {
  const td = typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain) : trustDomain;
  return (id) => id.memberOf(td);
}

/** A custom predicate. It fails closed: a predicate that throws denies. */
export function authorizeIf(predicate: (id: SpiffeId) => boolean): Authorizer {
  return (id) => {
    try {
      return predicate(id) === true;
    } catch {
      return false;
    }
  };
}

/** Runs `authorizer`, throwing `NotAuthorizedError` unless it returns exactly `true`. */
export function authorize(authorizer: Authorizer, id: SpiffeId): void {
  let ok = false;
  try {
    ok = authorizer(id) === true;
  } catch (err) {
    throw new NotAuthorizedError(
      id.toString(),
      `authorizer failed for peer identity "${id}": ${String(err)}`,
    );
  }
  if (!ok) throw new NotAuthorizedError(id.toString());
}
