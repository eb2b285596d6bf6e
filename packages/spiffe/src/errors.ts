/**
 * One error class per failure, each with a stable `code` (the undici convention): callers branch
 * on `err.code` or `instanceof`, never on message text. Messages for SPIFFE ID errors are the
 * exact wording of the SPIFFE-ID standard's reference implementation (go-spiffe), so that logs
 * read the same across languages.
 */

export type SpiffeErrorCode =
  | 'ERR_SPIFFE_ID_INVALID'
  | 'ERR_TRUST_DOMAIN_INVALID'
  | 'ERR_PEM_INVALID'
  | 'ERR_CERTIFICATE_INVALID'
  | 'ERR_PRIVATE_KEY_INVALID'
  | 'ERR_SVID_INVALID'
  | 'ERR_BUNDLE_INVALID'
  | 'ERR_NO_BUNDLE_FOR_TRUST_DOMAIN'
  | 'ERR_CHAIN_UNTRUSTED'
  | 'ERR_CERTIFICATE_EXPIRED'
  | 'ERR_CERTIFICATE_NOT_YET_VALID'
  | 'ERR_IDENTITY_NOT_AUTHORIZED'
  | 'ERR_NO_PEER_CERTIFICATE'
  | 'ERR_SOURCE_CLOSED'
  | 'ERR_PEER_NOT_VERIFIED';

export abstract class SpiffeError extends Error {
  abstract readonly code: SpiffeErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A SPIFFE ID that breaks a rule of the SPIFFE-ID standard (section 2). */
export class InvalidSpiffeIdError extends SpiffeError {
  readonly code = 'ERR_SPIFFE_ID_INVALID' as const;
  /** The rejected input, truncated to 256 characters so a hostile ID cannot flood logs. */
  readonly input: string;
  constructor(message: string, input: string) {
    super(message);
    this.input = input.length > 256 ? `${input.slice(0, 256)}...` : input;
  }
}

/** A trust domain name that breaks the SPIFFE-ID standard (section 2.1). */
export class InvalidTrustDomainError extends SpiffeError {
  readonly code = 'ERR_TRUST_DOMAIN_INVALID' as const;
  readonly input: string;
  constructor(message: string, input: string) {
    super(message);
    this.input = input.length > 256 ? `${input.slice(0, 256)}...` : input;
  }
}

/** Text that should have been PEM but is not: no block, truncated block, bad base64, wrong label. */
export class InvalidPemError extends SpiffeError {
  readonly code = 'ERR_PEM_INVALID' as const;
}

/** Bytes that do not parse as a DER X.509 certificate. */
export class InvalidCertificateError extends SpiffeError {
  readonly code = 'ERR_CERTIFICATE_INVALID' as const;
}

/** A private key that cannot be parsed, has an unsupported type, or does not match the leaf. */
export class InvalidPrivateKeyError extends SpiffeError {
  readonly code = 'ERR_PRIVATE_KEY_INVALID' as const;
}

/** A certificate chain that parses but breaks a rule of the X509-SVID standard. */
export class InvalidSvidError extends SpiffeError {
  readonly code = 'ERR_SVID_INVALID' as const;
}

/** A trust bundle (PEM or SPIFFE bundle JSON) that cannot be used. */
export class InvalidBundleError extends SpiffeError {
  readonly code = 'ERR_BUNDLE_INVALID' as const;
}

/** The peer claims a trust domain for which we hold no bundle. */
export class NoBundleError extends SpiffeError {
  readonly code = 'ERR_NO_BUNDLE_FOR_TRUST_DOMAIN' as const;
  readonly trustDomain: string;
  constructor(trustDomain: string) {
    super(`no bundle for trust domain "${trustDomain}"`);
    this.trustDomain = trustDomain;
  }
}

/** The chain does not lead to an authority of the bundle of the leaf's own trust domain. */
export class UntrustedChainError extends SpiffeError {
  readonly code = 'ERR_CHAIN_UNTRUSTED' as const;
}

/** A certificate of the chain is past its notAfter at verification time. */
export class CertificateExpiredError extends SpiffeError {
  readonly code = 'ERR_CERTIFICATE_EXPIRED' as const;
}

/** A certificate of the chain is before its notBefore at verification time. */
export class CertificateNotYetValidError extends SpiffeError {
  readonly code = 'ERR_CERTIFICATE_NOT_YET_VALID' as const;
}

/** The peer's verified SPIFFE ID is not one the authoriser accepts. */
export class NotAuthorizedError extends SpiffeError {
  readonly code = 'ERR_IDENTITY_NOT_AUTHORIZED' as const;
  /** The verified peer ID as a string. */
  readonly peerId: string;
  constructor(peerId: string, message?: string) {
    super(message ?? `peer identity "${peerId}" is not authorized`);
    this.peerId = peerId;
  }
}

/** The TLS peer presented no certificate (or the socket is not a TLS socket). */
export class NoPeerCertificateError extends SpiffeError {
  readonly code = 'ERR_NO_PEER_CERTIFICATE' as const;
}

/** A source was used after `close()`. */
export class SourceClosedError extends SpiffeError {
  readonly code = 'ERR_SOURCE_CLOSED' as const;
}

/**
 * `peerIdentity` cannot tell who the peer is: the socket was not verified by our TLS options or
 * `enforceServerPeers`, and no bundle source was given to verify it now.
 */
export class PeerNotVerifiedError extends SpiffeError {
  readonly code = 'ERR_PEER_NOT_VERIFIED' as const;
}
