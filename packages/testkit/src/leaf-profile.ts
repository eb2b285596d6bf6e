/**
 * What goes into a leaf SVID: subject, extensions and validity, for a valid leaf or for one changed
 * by defect switches. Pure and synchronous; `TestCa.mint` only adds a key and a signature.
 */
import { EMPTY_NAME_DER } from './certificate.js';
import {
  basicConstraints,
  KeyUsage,
  keyUsage,
  type SanEntry,
  serverAndClientAuth,
  subjectAltName,
  unknownCriticalExtension,
} from './extensions.js';
import type { KeyType } from './key-type.js';
import type { MintOptions } from './minted-svid.js';
import { DNS_SAN_NAME, type SvidDefect } from './svid-defects.js';
import { x509 } from './x509.js';

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
export const DEFAULT_TTL_MS = 24 * HOUR;

let spiffeOrgName: Uint8Array | undefined;
/** `O=SPIFFE`: a subject that says what the certificate is without pretending to name the workload. */
function spiffeOrganization(): Uint8Array {
  spiffeOrgName ??= new Uint8Array(new x509.Name('O=SPIFFE').toArrayBuffer());
  return spiffeOrgName;
}

export interface LeafProfile {
  subjectNameDer: Uint8Array;
  extensions: Uint8Array[];
  notBefore: Date;
  notAfter: Date;
}

export interface LeafProfileInput {
  id: string;
  /** The CA's trust domain: used when a defect must derive a URI and `id` is not a spiffe:// URI. */
  caTrustDomain: string;
  keyType: KeyType;
  defects: readonly SvidDefect[];
  now: Date;
  options: MintOptions;
  /** The issuer's authorityKeyIdentifier extension for this leaf (RFC 5280 4.2.1.1). */
  authorityKeyIdentifier: Uint8Array;
}

export function leafProfile(input: LeafProfileInput): LeafProfile {
  const has = (d: SvidDefect) => input.defects.includes(d);
  // X509-SVID 4.1: leaf cA MUST be false. RFC 5280 4.2.1.9: basicConstraints SHOULD be critical.
  const extensions: Uint8Array[] = [basicConstraints(has('leaf-ca'))];

  // X509-SVID 4.3: digitalSignature is required; keyEncipherment MAY be set and only makes sense for
  // RSA (TLS 1.2 RSA key transport), so RSA leaves get it as Istio's RSA certificates do.
  let usages: number = KeyUsage.digitalSignature;
  if (input.keyType === 'rsa-2048') usages |= KeyUsage.keyEncipherment;
  if (has('key-cert-sign')) usages |= KeyUsage.keyCertSign;
  if (has('crl-sign')) usages |= KeyUsage.cRLSign;
  extensions.push(keyUsage(usages), serverAndClientAuth());

  const names = sanEntries(input);
  const emptySubject = has('empty-subject-critical-san');
  if (emptySubject && names.length === 0) {
    // RFC 5280 4.1.2.6: an empty subject needs a subjectAltName; refusing beats minting garbage.
    throw new TypeError("'empty-subject-critical-san' needs a SAN: add 'dns-san' when using 'no-uri-san'");
  }
  // RFC 5280 4.2.1.6: the SAN MUST be critical when the subject is empty, SHOULD NOT be otherwise.
  if (names.length > 0) extensions.push(subjectAltName(names, emptySubject));
  extensions.push(input.authorityKeyIdentifier);
  if (has('unknown-critical-extension')) extensions.push(unknownCriticalExtension());

  return {
    subjectNameDer: emptySubject ? EMPTY_NAME_DER : spiffeOrganization(),
    extensions,
    ...leafValidity(input),
  };
}

function sanEntries(input: LeafProfileInput): SanEntry[] {
  const { id, defects } = input;
  const spiffe = splitSpiffeUri(id);
  const td = spiffe?.trustDomain ?? input.caTrustDomain;
  const entries: SanEntry[] = [];
  if (defects.includes('no-path')) {
    entries.push({ type: 'uri', value: `spiffe://${td}` });
  } else if (defects.includes('non-spiffe-uri')) {
    entries.push({ type: 'uri', value: `https://${td}${spiffe?.path || '/testkit'}` });
  } else if (defects.includes('two-uri-sans')) {
    const second = `spiffe://${td}/testkit/second-uri`;
    entries.push({ type: 'uri', value: id }, { type: 'uri', value: second === id ? `${second}-2` : second });
  } else if (!defects.includes('no-uri-san')) {
    entries.push({ type: 'uri', value: id });
  }
  if (defects.includes('dns-san')) entries.push({ type: 'dns', value: DNS_SAN_NAME });
  return entries;
}

/** Splits `spiffe://td/path` without judging it: tests mint malformed IDs on purpose. */
function splitSpiffeUri(id: string): { trustDomain: string; path: string } | undefined {
  if (!id.startsWith('spiffe://')) return undefined;
  const rest = id.slice('spiffe://'.length);
  const slash = rest.indexOf('/');
  return slash < 0
    ? { trustDomain: rest, path: '' }
    : { trustDomain: rest.slice(0, slash), path: rest.slice(slash) };
}

function leafValidity(input: LeafProfileInput): { notBefore: Date; notAfter: Date } {
  const { options, defects, now } = input;
  const t = now.getTime();
  const expired = defects.includes('expired');
  if (expired || defects.includes('not-yet-valid')) {
    if (options.notBefore || options.notAfter || options.ttlMs !== undefined) {
      throw new TypeError("'expired' and 'not-yet-valid' set the validity: drop notBefore/notAfter/ttlMs");
    }
    return expired
      ? { notBefore: new Date(t - 25 * HOUR), notAfter: new Date(t - HOUR) }
      : { notBefore: new Date(t + HOUR), notAfter: new Date(t + 25 * HOUR) };
  }
  const notBefore = options.notBefore ?? new Date(t - MINUTE);
  const notAfter = options.notAfter ?? new Date(t + (options.ttlMs ?? DEFAULT_TTL_MS));
  if (notAfter.getTime() < notBefore.getTime()) throw new RangeError('notAfter is before notBefore');
  return { notBefore, notAfter };
}
