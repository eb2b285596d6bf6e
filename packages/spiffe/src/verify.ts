/**
 * Verification of a peer's X509-SVID chain (X509-SVID standard section 5): the leaf rules, then
 * RFC 5280 path validation against the bundle of the leaf's OWN trust domain only. Bundles of
 * different trust domains are never merged: a leaf claiming domain B that chains to domain A's
 * authority is untrusted even when A's bundle is loaded.
 *
 * Everything is synchronous (it runs inside TLS callbacks) and bounded: at most
 * `MAX_CHAIN_LENGTH` certificates, at most `MAX_SIGNATURE_CHECKS` signature checks.
 */
import {
  CertificateExpiredError,
  CertificateNotYetValidError,
  InvalidSvidError,
  NoBundleError,
  UntrustedChainError,
} from './errors.js';
import type { SpiffeId } from './spiffe-id.js';
import type { X509Bundle, X509BundleSource } from './x509-bundle.js';
import { KeyUsage, type ParsedCertificate, parseCertificate } from './x509-certificate.js';
import { leafSvidId, MAX_CHAIN_LENGTH } from './x509-svid.js';

/** Intermediates allowed between the leaf and the authority. */
export const MAX_INTERMEDIATES = 8;
/** Signature checks one verification may spend looking for a path. */
export const MAX_SIGNATURE_CHECKS = 64;

export interface VerifyOptions {
  /** The verification time; default now. */
  now?: Date;
}

export interface VerifiedSvid {
  /** The peer's SPIFFE ID, from the leaf's URI SAN. */
  readonly id: SpiffeId;
  /** The validated path: leaf, intermediates, and last the authority of `bundle`. */
  readonly verifiedChain: readonly ParsedCertificate[];
  /** The bundle of `id.trustDomain` that anchored the path. */
  readonly bundle: X509Bundle;
}

function describe(cert: ParsedCertificate, role: string): string {
  return `${role} certificate (subject "${cert.subject}", serial ${cert.serialNumber})`;
}

/** The host of a URI (`scheme://[userinfo@]host[:port]/...`), lowercase, or undefined. */
function uriHost(uri: string): string | undefined {
  const m = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/([^/?#]*)/.exec(uri);
  if (m === null) return undefined;
  const authority = m[1]!.slice(m[1]!.lastIndexOf('@') + 1);
  const host = authority.startsWith('[')
    ? authority.slice(0, authority.indexOf(']') + 1)
    : authority.split(':')[0]!;
  return host === '' ? undefined : host.toLowerCase();
}

/** RFC 5280 4.2.1.10 matching: URI constraints name a host (`.x` = any host under x); DNS ones a subtree. */
function matches(type: 'uri' | 'dns', name: string, constraint: string): boolean {
  const c = constraint.toLowerCase();
  if (type === 'uri') return c.startsWith('.') ? name.endsWith(c) : name === c;
  const n = name.toLowerCase();
  if (c === '') return true;
  return c.startsWith('.') ? n.endsWith(c) : n === c || n.endsWith(`.${c}`);
}

/** Checks the URI and DNS SANs of `cert` against `ca`'s name constraints; throws UntrustedChainError. */
function checkNameConstraints(
  ca: ParsedCertificate,
  caRole: string,
  cert: ParsedCertificate,
  role: string,
): void {
  const nc = ca.nameConstraints;
  if (nc === undefined) return;
  const unsupported = [...nc.permitted, ...nc.excluded].find((c) => c.type === 'other');
  if (unsupported !== undefined) {
    // Fail closed: a constraint we cannot evaluate must not be ignored.
    throw new UntrustedChainError(
      `${describe(ca, caRole)} has a name constraint form this verifier does not support`,
    );
  }
  const names: ['uri' | 'dns', string | undefined, string][] = [
    ...cert.uris.map((u): ['uri', string | undefined, string] => ['uri', uriHost(u), u]),
    ...cert.dnsNames.map((d): ['dns', string, string] => ['dns', d, d]),
  ];
  for (const [type, name, shown] of names) {
    const refuse = (why: string) =>
      new UntrustedChainError(`${describe(ca, caRole)} name constraints ${why} ${role} name "${shown}"`);
    const permitted = nc.permitted.filter((c) => c.type === type);
    if (name === undefined) {
      if (permitted.length > 0) throw refuse('do not permit');
      continue;
    }
    if (permitted.length > 0 && !permitted.some((c) => matches(type, name, c.value)))
      throw refuse('do not permit');
    if (nc.excluded.some((c) => c.type === type && matches(type, name, c.value))) throw refuse('exclude');
  }
}

function roleOf(index: number, length: number): string {
  if (index === 0) return 'leaf';
  if (index === length - 1) return 'authority';
  return `intermediate ${index}`;
}

/** RFC 5280 6.1.3/6.1.4 checks of one complete path (leaf first, authority last); throws the first failure. */
function checkPath(path: readonly ParsedCertificate[], now: Date): void {
  const t = now.getTime();
  for (let i = 0; i < path.length; i++) {
    const cert = path[i]!;
    const role = roleOf(i, path.length);
    if (t < cert.notBefore.getTime()) {
      throw new CertificateNotYetValidError(
        `${describe(cert, role)} is not valid before ${cert.notBefore.toISOString()} (verification time ${now.toISOString()})`,
      );
    }
    if (t > cert.notAfter.getTime()) {
      throw new CertificateExpiredError(
        `${describe(cert, role)} expired at ${cert.notAfter.toISOString()} (verification time ${now.toISOString()})`,
      );
    }
    const unknown = cert.unknownCriticalExtensions[0];
    if (unknown !== undefined) {
      throw new UntrustedChainError(
        `${describe(cert, role)} has an unsupported critical extension ${unknown}`,
      );
    }
    if (i === 0) continue;
    if (!cert.isCa)
      throw new UntrustedChainError(`${describe(cert, role)} is not a CA (basicConstraints cA is not true)`);
    // X509-SVID 4.3: signing certificates MUST set keyCertSign. An authority without a key usage
    // extension is allowed (RFC 5280: no extension, no restriction; `openssl req -x509` writes
    // none by default); intermediates are SVID signing certificates and must have it.
    const isAuthority = i === path.length - 1;
    if (!cert.hasKeyUsage(KeyUsage.keyCertSign) && !(isAuthority && cert.keyUsage === undefined)) {
      throw new UntrustedChainError(`${describe(cert, role)} must have 'keyCertSign' set as key usage`);
    }
    // RFC 5280 6.1.4 (g): constraints apply to every certificate below, self-issued intermediates excepted.
    for (let j = 0; j < i; j++) {
      if (j > 0 && path[j]!.selfIssued) continue;
      checkNameConstraints(cert, role, path[j]!, roleOf(j, path.length));
    }
    if (cert.pathLen !== undefined) {
      // RFC 5280 4.2.1.9: the number of non-self-issued intermediates that may follow.
      let below = 0;
      for (let j = 1; j < i; j++) if (!path[j]!.selfIssued) below++;
      if (below > cert.pathLen) {
        throw new UntrustedChainError(
          `${describe(cert, role)} allows ${cert.pathLen} intermediate(s) below it; the path has ${below}`,
        );
      }
    }
  }
}

/**
 * Finds every path leaf -> intermediates -> authority whose names chain and whose signatures
 * verify (bounded), depth first, intermediates in the order the peer sent them.
 */
function findPaths(
  leaf: ParsedCertificate,
  intermediates: readonly ParsedCertificate[],
  authorities: readonly ParsedCertificate[],
): ParsedCertificate[][] {
  const paths: ParsedCertificate[][] = [];
  let budget = MAX_SIGNATURE_CHECKS;
  const signed = (child: ParsedCertificate, parent: ParsedCertificate): boolean => {
    if (!child.namedIssuer(parent) || budget <= 0) return false;
    budget--;
    return child.isSignedBy(parent);
  };
  const walk = (path: ParsedCertificate[]): void => {
    const tip = path[path.length - 1]!;
    for (const a of authorities) {
      if (signed(tip, a)) paths.push([...path, a]);
    }
    if (path.length > MAX_INTERMEDIATES) return;
    for (const c of intermediates) {
      if (path.includes(c)) continue;
      if (signed(tip, c)) walk([...path, c]);
    }
  };
  walk([leaf]);
  return paths;
}

/**
 * Verifies an X509-SVID chain (DER, leaf first, as a TLS peer sends it) against the bundle of the
 * leaf's own trust domain, at `options.now`. Returns the peer's ID and the validated path.
 *
 * Throws (all `SpiffeError`s): `InvalidCertificateError` (bytes that are not a certificate),
 * `InvalidSvidError` (leaf rules), `NoBundleError`, `UntrustedChainError` (no path to an
 * authority of that bundle, or an issuer that may not issue, or an unsupported critical
 * extension), `CertificateExpiredError` / `CertificateNotYetValidError` (naming the certificate).
 */
export function verifyX509Svid(
  chain: readonly (Uint8Array | ParsedCertificate)[],
  bundles: X509BundleSource,
  options: VerifyOptions = {},
): VerifiedSvid {
  if (chain.length === 0) throw new InvalidSvidError('empty certificates chain');
  if (chain.length > MAX_CHAIN_LENGTH) {
    throw new InvalidSvidError(`certificate chain longer than ${MAX_CHAIN_LENGTH} certificates`);
  }
  const leaf = parseCertificate(chain[0]!);
  const id = leafSvidId(leaf);
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) throw new NoBundleError(id.trustDomain.name);
  const authorities = bundle.authorities;
  // Peers may send the root too; it adds nothing (the bundle's copy anchors the path).
  const intermediates: ParsedCertificate[] = [];
  for (let i = 1; i < chain.length; i++) {
    const c = parseCertificate(chain[i]!);
    if (c !== leaf && !intermediates.includes(c) && !authorities.some((a) => a.equals(c)))
      intermediates.push(c);
  }
  const paths = findPaths(leaf, intermediates, authorities);
  if (paths.length === 0) {
    throw new UntrustedChainError(
      `leaf certificate does not chain to an authority of trust domain "${id.trustDomain.name}" ` +
        `(issuer "${leaf.issuer}", ${intermediates.length} intermediate(s), ${authorities.length} authorit${
          authorities.length === 1 ? 'y' : 'ies'
        })`,
    );
  }
  const now = options.now ?? new Date();
  let firstError: unknown;
  for (const path of paths) {
    try {
      checkPath(path, now);
      return Object.freeze({ id, verifiedChain: Object.freeze(path), bundle });
    } catch (err) {
      firstError ??= err;
    }
  }
  throw firstError;
}

/**
 * Verifies the leaf of a path that TLS (OpenSSL) has already validated, for when the peer's
 * intermediates cannot be had: Node 24.21 and 26.8+ servers drop them from
 * `getPeerCertificate(true)` (nodejs/node#65579). The caller vouches that OpenSSL accepted the
 * path against a store holding only authorities of the leaf's own trust domain, so the per trust
 * domain anchoring of `verifyX509Svid` still holds; OpenSSL also checked the intermediates'
 * signatures, CA flags, key usages, path lengths, name constraints and critical extensions.
 * Here: the leaf rules, the leaf's validity at `options.now`, its critical extensions, and the
 * name constraints of the trust domain's authorities when there is exactly one (the path's
 * authority is then known). `verifiedChain` holds the leaf alone.
 */
export function verifyLeafOfTlsValidatedPath(
  leafDer: Uint8Array | ParsedCertificate,
  bundles: X509BundleSource,
  options: VerifyOptions = {},
): VerifiedSvid {
  const leaf = parseCertificate(leafDer);
  const id = leafSvidId(leaf);
  const bundle = bundles.getX509BundleForTrustDomain(id.trustDomain);
  if (bundle === undefined) throw new NoBundleError(id.trustDomain.name);
  checkPath([leaf], options.now ?? new Date());
  if (bundle.authorities.length === 1)
    checkNameConstraints(bundle.authorities[0]!, 'authority', leaf, 'leaf');
  return Object.freeze({ id, verifiedChain: Object.freeze([leaf]), bundle });
}
