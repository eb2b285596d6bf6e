import { InvalidTrustDomainError } from './errors.js';

/**
 * Error messages of the SPIFFE-ID standard's reference implementation (go-spiffe v2, spiffeid
 * package). Shared with `spiffe-id.ts` so a trust domain fails the same way alone or inside an ID.
 */
export const SPIFFE_ID_MESSAGES = Object.freeze({
  empty: 'cannot be empty',
  wrongScheme: 'scheme is missing or invalid',
  missingTrustDomain: 'trust domain is missing',
  badTrustDomainChar:
    'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores',
  badPathSegmentChar:
    'path segment characters are limited to letters, numbers, dots, dashes, and underscores',
  emptySegment: 'path cannot contain empty segments',
  dotSegment: 'path cannot contain dot segments',
  trailingSlash: 'path cannot have a trailing slash',
  noLeadingSlash: 'path must have a leading slash',
  tooLong: 'SPIFFE ID exceeds 2048 bytes',
});

export const SPIFFE_SCHEME_PREFIX = 'spiffe://';

/**
 * SPIFFE-ID standard 2.1: trust domain names are `[a-z0-9._-]`, lowercase only. Checked with a
 * char-code table rather than a regex: it runs on every handshake.
 */
export function isTrustDomainChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) || // a-z
    (c >= 0x30 && c <= 0x39) || // 0-9
    c === 0x2e || // .
    c === 0x2d || // -
    c === 0x5f // _
  );
}

/**
 * A SPIFFE trust domain: an immutable value. Compare with `equals`, never `===` (two parses of
 * the same name are distinct objects).
 */
export class TrustDomain {
  /** The trust domain name, e.g. `cluster.local`. */
  readonly name: string;

  private constructor(name: string) {
    this.name = name;
    Object.freeze(this);
  }

  /**
   * Parses a trust domain name (`example.org`). Like go-spiffe, a full SPIFFE ID
   * (`spiffe://example.org/...`) is accepted too and yields its trust domain.
   */
  static parse(input: string): TrustDomain {
    if (input.length === 0) throw new InvalidTrustDomainError(SPIFFE_ID_MESSAGES.missingTrustDomain, input);
    if (input.includes(':/')) {
      if (!input.startsWith(SPIFFE_SCHEME_PREFIX)) {
        throw new InvalidTrustDomainError(SPIFFE_ID_MESSAGES.wrongScheme, input);
      }
      const rest = input.slice(SPIFFE_SCHEME_PREFIX.length);
      const slash = rest.indexOf('/');
      return TrustDomain.parse(slash === -1 ? rest : rest.slice(0, slash));
    }
    for (let i = 0; i < input.length; i++) {
      if (!isTrustDomainChar(input.charCodeAt(i))) {
        throw new InvalidTrustDomainError(SPIFFE_ID_MESSAGES.badTrustDomainChar, input);
      }
    }
    return new TrustDomain(input);
  }

  /** Internal fast path for names already validated by `SpiffeId.parse`. */
  static fromValidatedName(name: string): TrustDomain {
    return new TrustDomain(name);
  }

  /** The SPIFFE ID of the trust domain itself: `spiffe://<name>`. */
  idString(): string {
    return SPIFFE_SCHEME_PREFIX + this.name;
  }

  equals(other: TrustDomain | undefined | null): boolean {
    return other != null && other.name === this.name;
  }

  /** Orders by name, for sorted output and maps. */
  compare(other: TrustDomain): number {
    return this.name < other.name ? -1 : this.name > other.name ? 1 : 0;
  }

  toString(): string {
    return this.name;
  }

  toJSON(): string {
    return this.name;
  }
}
