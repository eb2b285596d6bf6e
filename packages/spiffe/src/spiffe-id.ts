import { InvalidSpiffeIdError } from './errors.js';
import {
  isTrustDomainChar,
  SPIFFE_ID_MESSAGES as M,
  SPIFFE_SCHEME_PREFIX,
  TrustDomain,
} from './trust-domain.js';

/**
 * SPIFFE-ID standard 2.3: implementations must accept IDs up to 2048 bytes. We also refuse
 * anything longer, so a hostile certificate cannot make us copy megabytes per handshake.
 */
export const MAX_SPIFFE_ID_BYTES = 2048;

/** SPIFFE-ID standard 2.2: path segment characters are `[a-zA-Z0-9._-]`. */
function isPathChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x2e ||
    c === 0x2d ||
    c === 0x5f
  );
}

/**
 * Validates a path (`''` or `/seg/seg`) and returns the message of the first broken rule, in
 * go-spiffe's order: empty segment, dot segment, bad character, trailing slash.
 */
function pathError(path: string): string | undefined {
  if (path.length === 0) return undefined;
  if (path.charCodeAt(0) !== 0x2f) return M.noLeadingSlash;
  let segStart = 1;
  for (let i = 1; i <= path.length; i++) {
    const c = i < path.length ? path.charCodeAt(i) : 0x2f;
    if (c === 0x2f) {
      const len = i - segStart;
      if (len === 0) return i === path.length ? M.trailingSlash : M.emptySegment;
      if (len <= 2 && path.slice(segStart, i).replaceAll('.', '') === '') return M.dotSegment;
      segStart = i + 1;
    } else if (!isPathChar(c)) {
      return M.badPathSegmentChar;
    }
  }
  return undefined;
}

/** Istio's identity form, `spiffe://<td>/ns/<namespace>/sa/<service account>`. */
export interface IstioIdentity {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/**
 * A SPIFFE ID (`spiffe://<trust domain><path>`): an immutable, validated value. Build one with
 * `parse`, `fromSegments` or `fromPath`; the constructor is private so every instance is valid.
 */
export class SpiffeId {
  readonly trustDomain: TrustDomain;
  /** The path with its leading slash, or `''` for the trust domain's own ID. */
  readonly path: string;
  readonly #string: string;

  private constructor(trustDomain: TrustDomain, path: string) {
    this.trustDomain = trustDomain;
    this.path = path;
    this.#string = SPIFFE_SCHEME_PREFIX + trustDomain.name + path;
    Object.freeze(this);
  }

  /** Parses `spiffe://td/path`, enforcing every rule of the SPIFFE-ID standard. */
  static parse(input: string): SpiffeId {
    if (input.length === 0) throw new InvalidSpiffeIdError(M.empty, input);
    if (Buffer.byteLength(input, 'utf8') > MAX_SPIFFE_ID_BYTES)
      throw new InvalidSpiffeIdError(M.tooLong, input);
    if (!input.startsWith(SPIFFE_SCHEME_PREFIX)) throw new InvalidSpiffeIdError(M.wrongScheme, input);
    const start = SPIFFE_SCHEME_PREFIX.length;
    let end = start;
    for (; end < input.length; end++) {
      const c = input.charCodeAt(end);
      if (c === 0x2f) break;
      if (!isTrustDomainChar(c)) throw new InvalidSpiffeIdError(M.badTrustDomainChar, input);
    }
    if (end === start) throw new InvalidSpiffeIdError(M.missingTrustDomain, input);
    const path = input.slice(end);
    const err = pathError(path);
    if (err !== undefined) throw new InvalidSpiffeIdError(err, input);
    return new SpiffeId(TrustDomain.fromValidatedName(input.slice(start, end)), path);
  }

  /** Like `parse`, but returns `undefined` instead of throwing. */
  static tryParse(input: string): SpiffeId | undefined {
    try {
      return SpiffeId.parse(input);
    } catch {
      return undefined;
    }
  }

  /** Builds an ID from a trust domain and a path (`/ns/default/sa/app`). */
  static fromPath(trustDomain: TrustDomain | string, path: string): SpiffeId {
    const td = typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain) : trustDomain;
    const err = pathError(path);
    if (err !== undefined) throw new InvalidSpiffeIdError(err, SPIFFE_SCHEME_PREFIX + td.name + path);
    const id = new SpiffeId(td, path);
    if (Buffer.byteLength(id.#string, 'utf8') > MAX_SPIFFE_ID_BYTES) {
      throw new InvalidSpiffeIdError(M.tooLong, id.#string);
    }
    return id;
  }

  /** Builds an ID from path segments, each validated: `fromSegments(td, 'ns', 'default')`. */
  static fromSegments(trustDomain: TrustDomain | string, ...segments: string[]): SpiffeId {
    // Each segment is checked alone (as go-spiffe's FromSegments does), so '' reports an empty
    // segment rather than the trailing slash it would become once joined.
    for (const s of segments) {
      const err = s.length === 0 ? M.emptySegment : s.includes('/') ? M.badPathSegmentChar : undefined;
      if (err !== undefined) throw new InvalidSpiffeIdError(err, segments.join('/'));
    }
    return SpiffeId.fromPath(trustDomain, segments.map((s) => `/${s}`).join(''));
  }

  /** Istio's workload identity: `spiffe://<td>/ns/<namespace>/sa/<serviceAccount>`. */
  static fromIstio(trustDomain: TrustDomain | string, namespace: string, serviceAccount: string): SpiffeId {
    return SpiffeId.fromSegments(trustDomain, 'ns', namespace, 'sa', serviceAccount);
  }

  /** The path's segments, without slashes. */
  segments(): readonly string[] {
    return this.path === '' ? [] : this.path.slice(1).split('/');
  }

  /** The namespace and service account when the path is Istio's `/ns/<ns>/sa/<sa>`. */
  istio(): IstioIdentity | undefined {
    const s = this.segments();
    if (s.length !== 4 || s[0] !== 'ns' || s[2] !== 'sa') return undefined;
    return Object.freeze({ namespace: s[1]!, serviceAccount: s[3]! });
  }

  /** True when this ID belongs to the given trust domain. */
  memberOf(trustDomain: TrustDomain): boolean {
    return this.trustDomain.equals(trustDomain);
  }

  equals(other: SpiffeId | undefined | null): boolean {
    return other != null && other.#string === this.#string;
  }

  compare(other: SpiffeId): number {
    return this.#string < other.#string ? -1 : this.#string > other.#string ? 1 : 0;
  }

  toString(): string {
    return this.#string;
  }

  toJSON(): string {
    return this.#string;
  }
}
