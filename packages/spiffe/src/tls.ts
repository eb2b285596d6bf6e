/**
 * Node TLS options that speak HBONE's outer envelope: TLS 1.3 only, TLS_AES_256_GCM_SHA384 and
 * TLS_AES_128_GCM_SHA256, ALPN `h2`, mutual authentication with X509-SVIDs, and no SNI unless
 * asked (ztunnel dials pod IPs and sends none).
 *
 * Two layers check a peer. OpenSSL verifies the chain against the union of every bundle's
 * authorities (`ca`), as it does for any TLS connection. Then our verifier runs again on the
 * peer's DER chain with the SPIFFE rules: the bundle of the peer's OWN trust domain only, the
 * leaf rules, and the authoriser. On the client that is `checkServerIdentity` (inside the
 * handshake, before `secureConnect`); on the server Node has no such hook, so
 * `enforceServerPeers` checks each connection before any `'secureConnection'` listener (an
 * `http2` server's included) sees it.
 */
import type { Server, TLSSocket } from 'node:tls';
import * as tls from 'node:tls';
import { type Authorizer, authorize } from './authorizer.js';
import type { Unsubscribe } from './change-listeners.js';
import { NoPeerCertificateError, PeerNotVerifiedError, UntrustedChainError } from './errors.js';
import type { SpiffeId } from './spiffe-id.js';
import { type VerifiedSvid, verifyLeafOfTlsValidatedPath, verifyX509Svid } from './verify.js';
import type { X509Bundle, X509BundleSource } from './x509-bundle.js';
import type { ParsedCertificate } from './x509-certificate.js';
import type { X509Svid, X509SvidSource } from './x509-svid.js';
import { MAX_CHAIN_LENGTH } from './x509-svid.js';

/** HBONE's TLS 1.3 suites, in ztunnel's order (no ChaCha20). */
export const HBONE_CIPHERSUITES = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256';
/** HBONE's only ALPN protocol. */
export const HBONE_ALPN: readonly string[] = Object.freeze(['h2']);

export interface TlsCredentials {
  /** Our X509-SVID (re-read on every call, so rotation applies to new handshakes). */
  svidSource: X509SvidSource;
  /** The bundles we trust, one per trust domain. */
  bundleSource: X509BundleSource;
}

export interface TlsPeerPolicy {
  bundleSource: X509BundleSource;
  /** Who may be on the other side, once verified. */
  authorizer: Authorizer;
  /** Verification time; default the current time. For tests. */
  now?: () => Date;
}

export interface TlsClientInput extends TlsCredentials, TlsPeerPolicy {
  /** SNI to send; default none (ztunnel's behaviour). */
  sni?: string;
}

/** What `tlsClientOptions` returns: ready for `tls.connect` (or `http2.connect`'s `createConnection`). */
export interface HboneTlsClientOptions extends tls.ConnectionOptions {
  secureContext: tls.SecureContext;
  minVersion: 'TLSv1.3';
  maxVersion: 'TLSv1.3';
  ciphers: string;
  ALPNProtocols: string[];
  servername: string;
  rejectUnauthorized: true;
  checkServerIdentity: (hostname: string, cert: tls.PeerCertificate) => Error | undefined;
}

/** What `tlsServerOptions` returns: ready for `tls.createServer` / `http2.createSecureServer`. */
export interface HboneTlsServerOptions extends tls.TlsOptions {
  key: string;
  cert: string;
  ca: string[];
  minVersion: 'TLSv1.3';
  maxVersion: 'TLSv1.3';
  ciphers: string;
  ALPNProtocols: string[];
  requestCert: true;
  rejectUnauthorized: true;
}

/** Verified peers, per socket. */
const verifiedSockets = new WeakMap<TLSSocket, VerifiedSvid>();

/**
 * Client verifications by peer leaf DER, so `peerIdentity` can find the policy that accepted a
 * client socket's peer (`checkServerIdentity` is not told the socket). Bounded.
 */
const clientPolicies = new Map<string, TlsPeerPolicy & { verified?: VerifiedSvid }>();
const MAX_CLIENT_POLICIES = 1024;

function rememberClientPolicy(leafKey: string, policy: TlsPeerPolicy, verified?: VerifiedSvid): void {
  clientPolicies.delete(leafKey);
  clientPolicies.set(leafKey, verified ? { ...policy, verified } : policy);
  if (clientPolicies.size > MAX_CLIENT_POLICIES)
    clientPolicies.delete(clientPolicies.keys().next().value as string);
}

function latin1(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');
}

/** The authorities of every bundle, as PEM, without duplicates: OpenSSL's `ca`. */
function authoritiesPem(bundleSource: X509BundleSource): string[] {
  const seen = new Set<string>();
  const out: string[] = [];
  for (const b of bundleSource.getX509Bundles()) {
    for (const a of b.authorities) {
      if (seen.has(a.key)) continue;
      seen.add(a.key);
      out.push(a.pem);
    }
  }
  return out;
}

function contextOptions(svid: X509Svid, bundleSource: X509BundleSource) {
  // Our own intermediates are the likeliest issuers of our peers' SVIDs (one CA per mesh): with
  // them at hand a peer verifies from its leaf even where Node hides the chain it sent
  // (nodejs/node#65579).
  learnIntermediates(svid.intermediates);
  return {
    key: svid.privateKeyPem,
    // Leaf then intermediates, never the root (the peer has it in its bundle).
    cert: svid.certChainPem,
    // Always an array: without `ca` Node would trust its public root store.
    ca: authoritiesPem(bundleSource),
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ciphers: HBONE_CIPHERSUITES,
  };
}

/** Client SecureContexts, per SVID object and bundle source generation. */
const clientContexts = new WeakMap<
  X509Svid,
  WeakMap<X509BundleSource, { generation: number; ctx: tls.SecureContext }>
>();

function clientContext(svid: X509Svid, bundleSource: X509BundleSource): tls.SecureContext {
  let perSource = clientContexts.get(svid);
  if (perSource === undefined) {
    perSource = new WeakMap();
    clientContexts.set(svid, perSource);
  }
  const hit = perSource.get(bundleSource);
  if (hit !== undefined && hit.generation === bundleSource.generation) return hit.ctx;
  const generation = bundleSource.generation;
  const ctx = tls.createSecureContext(contextOptions(svid, bundleSource));
  perSource.set(bundleSource, { generation, ctx });
  return ctx;
}

/** The DER chain Node hands `checkServerIdentity` (leaf, then `issuerCertificate` links). */
function chainOfPeerCertificate(cert: tls.PeerCertificate | tls.DetailedPeerCertificate): Uint8Array[] {
  const out: Uint8Array[] = [];
  const seen = new Set<object>();
  let c: tls.PeerCertificate | undefined = cert;
  while (c?.raw !== undefined && out.length < MAX_CHAIN_LENGTH && !seen.has(c)) {
    seen.add(c);
    out.push(c.raw);
    c = 'issuerCertificate' in c ? (c as tls.DetailedPeerCertificate).issuerCertificate : undefined;
  }
  return out;
}

/**
 * The peer's certificate chain (DER, leaf first), as Node links it from what the peer sent (and
 * the trust store). Uses `getPeerCertificate(true)`, which copies OpenSSL's chain (Node's
 * `getPeerX509Certificate()` links no further than the issuer it found). On Node 24.21 and
 * 26.8+ a server gets the client's leaf alone (nodejs/node#65579); `verifyPeer` copes.
 */
export function peerCertificateChain(socket: TLSSocket): Uint8Array[] {
  const cert = socket.getPeerCertificate(true);
  const chain = cert === null || typeof cert !== 'object' ? [] : chainOfPeerCertificate(cert);
  if (chain.length === 0) throw new NoPeerCertificateError('the TLS peer presented no certificate');
  return chain;
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

/**
 * Options for `tls.connect`, computed now from the sources: a fresh call after a rotation
 * presents the new SVID and trusts the new bundles. The SecureContext is cached per SVID and
 * bundle generation, so calling this per connection is cheap.
 *
 * `checkServerIdentity` ignores the host name (HBONE identities are SPIFFE IDs, never DNS
 * names), verifies the server's chain with `verifyX509Svid` against the bundle of the server's
 * trust domain, runs the authoriser, and returns the typed error, which Node then emits.
 */
export function tlsClientOptions(input: TlsClientInput): HboneTlsClientOptions {
  const svid = input.svidSource.getX509Svid();
  const policy: TlsPeerPolicy = {
    bundleSource: input.bundleSource,
    authorizer: input.authorizer,
    now: input.now,
  };
  return {
    secureContext: clientContext(svid, input.bundleSource),
    minVersion: 'TLSv1.3',
    maxVersion: 'TLSv1.3',
    ciphers: HBONE_CIPHERSUITES,
    ALPNProtocols: [...HBONE_ALPN],
    servername: input.sni ?? '',
    rejectUnauthorized: true,
    checkServerIdentity: (_hostname, cert) => {
      try {
        const chain = chainOfPeerCertificate(cert);
        if (chain.length === 0) return new NoPeerCertificateError('the TLS server presented no certificate');
        const verified = verifyX509Svid(chain, policy.bundleSource, { now: policy.now?.() });
        authorize(policy.authorizer, verified.id);
        // Kept with its result: peerIdentity() on this socket, moments later, need not verify
        // the same chain a second time.
        rememberClientPolicy(verified.verifiedChain[0]!.key, policy, verified);
        return undefined;
      } catch (err) {
        return asError(err);
      }
    },
  };
}

/**
 * Options for `tls.createServer` / `http2.createSecureServer`, computed now from the sources
 * (authorisation is `enforceServerPeers`'s job: Node gives a server no hook inside the handshake):
 * TLS 1.3 only, ALPN h2, a client certificate required and verified by OpenSSL against the
 * bundles' authorities. Pair with `enforceServerPeers` (SPIFFE rules and the authoriser) and
 * `keepServerCredentialsFresh` (rotation).
 */
export function tlsServerOptions(input: TlsCredentials): HboneTlsServerOptions {
  return {
    ...contextOptions(input.svidSource.getX509Svid(), input.bundleSource),
    ALPNProtocols: [...HBONE_ALPN],
    requestCert: true,
    rejectUnauthorized: true,
  };
}

/**
 * Intermediates of recent successful verifications. Node's `getPeerCertificate(true)` costs about
 * half a millisecond (it decodes every certificate of the chain into objects), while the leaf
 * alone (`getPeerCertificate(false)`) costs a few microseconds; with the usual intermediates at
 * hand most peers verify from their leaf. This is sound: intermediates are untrusted material
 * whose signatures and constraints are checked on every use, and only ones that were part of a
 * verified path (or of our own SVID) are kept. Bounded; never more than a chain may hold.
 */
const knownIntermediates = new Map<string, ParsedCertificate>();
const MAX_KNOWN_INTERMEDIATES = 8;

function rememberIntermediates(verified: VerifiedSvid): void {
  learnIntermediates(verified.verifiedChain.slice(1, -1));
}

function learnIntermediates(certs: readonly ParsedCertificate[]): void {
  for (const c of certs) {
    knownIntermediates.delete(c.key);
    knownIntermediates.set(c.key, c);
    if (knownIntermediates.size > MAX_KNOWN_INTERMEDIATES) {
      knownIntermediates.delete(knownIntermediates.keys().next().value as string);
    }
  }
}

/**
 * Verifies a connected socket's peer with our rules (no authoriser). Tries the peer's leaf with
 * the intermediates of recent verifications first; when that does not verify, verifies the chain
 * the peer sent, and that result (or its error) is the answer.
 */
export function verifyPeer(socket: TLSSocket, bundleSource: X509BundleSource, now?: Date): VerifiedSvid {
  const leaf = socket.getPeerCertificate(false);
  if (leaf === null || typeof leaf !== 'object' || leaf.raw === undefined) {
    throw new NoPeerCertificateError('the TLS peer presented no certificate');
  }
  // The leaf alone first (root-signed leaves, as istiod's own CA issues, need nothing more),
  // with the intermediates of recent verifications.
  try {
    return verifyX509Svid([leaf.raw, ...knownIntermediates.values()], bundleSource, { now });
  } catch {
    // fall through to the chain the peer sent
  }
  const chain = peerCertificateChain(socket);
  try {
    const verified = verifyX509Svid(chain, bundleSource, { now });
    rememberIntermediates(verified);
    return verified;
  } catch (err) {
    if (!(err instanceof UntrustedChainError) || chain.length !== 1 || socket.authorized !== true) throw err;
    // OpenSSL validated a path we cannot see: Node gave the leaf alone although the peer's
    // issuer is no authority of ours (Node 24.21 and 26.8+ servers, nodejs/node#65579; older
    // Nodes always link at least the authority). OpenSSL's store is the union of every bundle,
    // so its verdict anchors the leaf in the leaf's own trust domain only when no other trust
    // domain contributes an authority. Otherwise fail closed.
    const leaf = verifyLeafOfTlsValidatedPath(chain[0]!, bundleSource, { now });
    if (!storeHoldsOnly(bundleSource, leaf.bundle)) {
      throw new UntrustedChainError(
        `${err.message}; this Node.js (${process.version}) does not expose the intermediates the ` +
          'peer sent (nodejs/node#65579), and with bundles of several trust domains TLS alone ' +
          "cannot prove the path ends in the leaf's own",
        { cause: err },
      );
    }
    return leaf;
  }
}

/** Whether every authority of every bundle of `source` is one of `bundle`'s. */
function storeHoldsOnly(source: X509BundleSource, bundle: X509Bundle): boolean {
  const own = new Set(bundle.authorities.map((a) => a.key));
  for (const b of source.getX509Bundles()) {
    for (const a of b.authorities) if (!own.has(a.key)) return false;
  }
  return true;
}

type Emit = (event: string | symbol, ...args: unknown[]) => boolean;
const enforcedServers = new WeakMap<Server, TlsPeerPolicy>();

/**
 * Verifies every client of `server` before anyone sees it: `server.emit('secureConnection')` is
 * intercepted, the client's chain is verified with `verifyX509Svid` and the authoriser runs.
 * A rejected client's socket is destroyed, `'secureConnection'` is not emitted for it, and the
 * server emits `'peerRejected'` (error: SpiffeError, socket) instead. An accepted client's
 * identity is cached for `peerIdentity`. Returns a function that stops enforcing.
 */
export function enforceServerPeers(server: Server, policy: TlsPeerPolicy): Unsubscribe {
  if (enforcedServers.has(server)) throw new TypeError('enforceServerPeers: this server is already enforced');
  const p: TlsPeerPolicy = { ...policy };
  enforcedServers.set(server, p);
  const target = server as unknown as { emit: Emit };
  const original = target.emit;
  const wrapped: Emit = function (this: unknown, event, ...args) {
    if (event === 'secureConnection') {
      const socket = args[0] as TLSSocket;
      try {
        const verified = verifyPeer(socket, p.bundleSource, p.now?.());
        authorize(p.authorizer, verified.id);
        verifiedSockets.set(socket, verified);
      } catch (err) {
        socket.destroy();
        original.call(this, 'peerRejected', asError(err), socket);
        return false;
      }
    }
    return original.call(this, event, ...args);
  };
  target.emit = wrapped;
  return () => {
    if (target.emit === wrapped) target.emit = original;
    if (enforcedServers.get(server) === p) enforcedServers.delete(server);
  };
}

export interface KeepFreshOptions extends TlsCredentials {
  /** For sources without `onChange`: how often to compare generations; default 1000 ms. */
  pollMs?: number;
}

/**
 * Rotation for a server: when either source changes, `server.setSecureContext()` with the new
 * SVID and bundles. New handshakes use them; open connections keep theirs. A failure to build
 * the new context is emitted as `'credentialsError'` and the old one stays. Returns an
 * unsubscribe function (idempotent).
 */
export function keepServerCredentialsFresh(server: Server, options: KeepFreshOptions): Unsubscribe {
  const { svidSource, bundleSource } = options;
  let svid = svidSource.getX509Svid();
  let generation = bundleSource.generation;
  const refresh = (): void => {
    try {
      const nextSvid = svidSource.getX509Svid();
      if (nextSvid === svid && bundleSource.generation === generation) return;
      server.setSecureContext(contextOptions(nextSvid, bundleSource));
      svid = nextSvid;
      generation = bundleSource.generation;
    } catch (err) {
      server.emit('credentialsError', asError(err));
    }
  };
  const stops: Unsubscribe[] = [];
  const a = svidSource.onChange?.(refresh);
  const b = bundleSource.onChange?.(refresh);
  if (a !== undefined) stops.push(a);
  if (b !== undefined) stops.push(b);
  if (a === undefined || b === undefined) {
    const timer = setInterval(refresh, options.pollMs ?? 1000);
    timer.unref();
    stops.push(() => clearInterval(timer));
  }
  let stopped = false;
  return () => {
    if (stopped) return;
    stopped = true;
    for (const s of stops) s();
  };
}

/**
 * The verified SPIFFE ID of a TLS socket's peer. Sockets accepted under `enforceServerPeers`
 * and client sockets connected with `tlsClientOptions` are known (the chain is verified again,
 * from caches, for the latter); otherwise pass `bundleSource` to verify now. The result is
 * cached on the socket. Throws `NoPeerCertificateError`, `PeerNotVerifiedError` or the
 * verification error. It does not run an authoriser: that happened during the handshake.
 */
export function peerIdentity(socket: TLSSocket, bundleSource?: X509BundleSource): SpiffeId {
  const cached = verifiedSockets.get(socket);
  if (cached !== undefined) return cached.id;
  let policy: Pick<TlsPeerPolicy, 'bundleSource' | 'now'> | undefined;
  if (bundleSource !== undefined) {
    policy = { bundleSource };
  } else {
    const server = (socket as TLSSocket & { server?: Server }).server;
    policy = server === undefined ? undefined : enforcedServers.get(server);
    const leaf = socket.getPeerCertificate(false);
    if (policy === undefined && socket.authorized && leaf?.raw !== undefined) {
      const known = clientPolicies.get(latin1(leaf.raw));
      // checkServerIdentity verified this very leaf during this handshake: reuse its result
      // while it is still within the leaf's validity.
      const at = known?.now?.() ?? new Date();
      if (known?.verified && at <= known.verified.verifiedChain[0]!.notAfter) {
        verifiedSockets.set(socket, known.verified);
        return known.verified.id;
      }
      policy = known;
    }
  }
  if (policy === undefined) {
    throw new PeerNotVerifiedError(
      'peer identity unknown: socket not verified by hbone TLS options; pass a bundle source',
    );
  }
  const verified = verifyPeer(socket, policy.bundleSource, policy.now?.());
  verifiedSockets.set(socket, verified);
  return verified.id;
}
