/**
 * The ways an X509-SVID can be wrong (or unusual but right), as switches for `TestCa.mint`.
 *
 * Each switch changes exactly one property of an otherwise valid leaf or chain, so a verifier test
 * that expects rejection fails for the one reason it names. `SVID_DEFECTS` says, per switch, whether
 * the result is valid per the SPIFFE X509-SVID standard: table-drive verifier tests over it.
 */

export type SvidDefect =
  | 'expired'
  | 'not-yet-valid'
  | 'wrong-ca'
  | 'leaf-ca'
  | 'key-cert-sign'
  | 'crl-sign'
  | 'two-uri-sans'
  | 'no-uri-san'
  | 'non-spiffe-uri'
  | 'no-path'
  | 'dns-san'
  | 'empty-subject-critical-san'
  | 'unknown-critical-extension'
  | 'intermediate-not-ca'
  | 'path-len-exceeded';

export interface SvidDefectInfo {
  readonly defect: SvidDefect;
  /** True when a conforming verifier must ACCEPT the SVID (the switch is a positive case). */
  readonly valid: boolean;
  /** Needs a CA created with `{ intermediate: true }`; `mint` throws otherwise. */
  readonly requiresIntermediate: boolean;
  /** The rule that decides validity. */
  readonly rule: string;
  readonly description: string;
}

export const SVID_DEFECTS: readonly SvidDefectInfo[] = [
  {
    defect: 'expired',
    valid: false,
    requiresIntermediate: false,
    rule: 'RFC 5280 6.1.3 (a)(2)',
    description: 'notAfter is one hour in the past (validity now-25h .. now-1h).',
  },
  {
    defect: 'not-yet-valid',
    valid: false,
    requiresIntermediate: false,
    rule: 'RFC 5280 6.1.3 (a)(2)',
    description: 'notBefore is one hour in the future (validity now+1h .. now+25h).',
  },
  {
    defect: 'wrong-ca',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 5.1 (path validation against the trust domain bundle)',
    description:
      'Signed by an impostor CA (`ca.impostor`) with the same trust domain, the same subject names and ' +
      'the same shape, but its own keys: it only fails because the signature does not verify against the bundle. ' +
      'The chain carries the impostor intermediate when the CA has one.',
  },
  {
    defect: 'leaf-ca',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 4.1 and 5.2 (leaf cA MUST be false)',
    description: 'The leaf has basicConstraints cA=true; its key usage is still digitalSignature only.',
  },
  {
    defect: 'key-cert-sign',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 4.3 and 5.2 (leaf MUST NOT set keyCertSign)',
    description: 'The leaf key usage is digitalSignature + keyCertSign; cA stays false.',
  },
  {
    defect: 'crl-sign',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 4.3 and 5.2 (leaf MUST NOT set cRLSign)',
    description: 'The leaf key usage is digitalSignature + cRLSign; cA stays false.',
  },
  {
    defect: 'two-uri-sans',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 2 (exactly one URI SAN; validators MUST reject more)',
    description:
      'The SAN holds the ID and then a second, well-formed SPIFFE ID in the same trust domain ' +
      '(`<td>/testkit/second-uri`), so only the count is wrong.',
  },
  {
    defect: 'no-uri-san',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 2 (exactly one URI SAN)',
    description:
      'No URI SAN: the subjectAltName extension is left out entirely (subject stays O=SPIFFE). ' +
      "Combine with 'dns-san' for a SAN that holds only a DNS name.",
  },
  {
    defect: 'non-spiffe-uri',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 5.2 (scheme MUST be spiffe)',
    description: 'The one URI SAN has the `https` scheme: `https://<td>/<path>`.',
  },
  {
    defect: 'no-path',
    valid: false,
    requiresIntermediate: false,
    rule: 'X509-SVID 3.1 and 5.2 (leaf SPIFFE ID MUST have a non-root path)',
    description: 'The one URI SAN is the trust domain ID `spiffe://<td>` (what signing certificates carry).',
  },
  {
    defect: 'dns-san',
    valid: true,
    requiresIntermediate: false,
    rule: 'X509-SVID 2 ("MAY contain any number of other SAN field types, including DNS SANs")',
    description:
      'NOT a defect: a DNS SAN (`workload.hbone.test`) beside the one URI SAN. A verifier must accept it and ' +
      'must take the identity from the URI only (HBONE ignores DNS SANs).',
  },
  {
    defect: 'empty-subject-critical-san',
    valid: true,
    requiresIntermediate: false,
    rule: 'RFC 5280 4.1.2.6 and 4.2.1.6; X509-SVID 3.1',
    description:
      'NOT a defect: an empty subject DN with the subjectAltName extension marked critical, which is how ' +
      'Istio issues workload certificates. A verifier must accept it.',
  },
  {
    defect: 'unknown-critical-extension',
    valid: false,
    requiresIntermediate: false,
    rule: 'RFC 5280 4.2 ("MUST reject the certificate if it encounters a critical extension it does not recognize")',
    description:
      'The leaf carries a critical extension with a made-up OID (`UNKNOWN_CRITICAL_EXTENSION_OID`, a UUID arc ' +
      'under 2.25 per ITU-T X.667, so it names nothing real) and a DER NULL value.',
  },
  {
    defect: 'intermediate-not-ca',
    valid: false,
    requiresIntermediate: true,
    rule: 'RFC 5280 6.1.4 (k); X509-SVID 3.2 and 4.1 (signing certificates have cA=true and keyCertSign)',
    description:
      'The leaf is signed by an intermediate (issued by the root, in place of the CA intermediate) that has ' +
      'basicConstraints cA=false and key usage digitalSignature only.',
  },
  {
    defect: 'path-len-exceeded',
    valid: false,
    requiresIntermediate: false,
    rule: 'RFC 5280 4.2.1.9 and 6.1.4 (l)',
    description:
      'The CA signing certificate has pathLenConstraint 0 (the root of a CA without intermediate, the ' +
      'intermediate otherwise); the leaf is signed by an otherwise valid extra CA certificate below it.',
  },
];

/** An extension OID that no software recognises: a UUID-based OID (ITU-T X.667, arc 2.25;
 * UUID 3165db4e-7244-454e-9f99-92217e68295d, drawn at random for this file). */
export const UNKNOWN_CRITICAL_EXTENSION_OID = '2.25.65661041839036596560210174996837312861';

/** The DNS name the 'dns-san' switch adds. */
export const DNS_SAN_NAME = 'workload.hbone.test';

/** Switches that cannot apply together: each group sets the same property differently. */
const EXCLUSIVE_GROUPS: readonly (readonly SvidDefect[])[] = [
  ['expired', 'not-yet-valid'],
  ['two-uri-sans', 'no-uri-san', 'non-spiffe-uri', 'no-path'],
  ['wrong-ca', 'intermediate-not-ca', 'path-len-exceeded'],
];

export function checkDefectCombination(defects: readonly SvidDefect[]): void {
  for (const d of defects) {
    if (!SVID_DEFECTS.some((info) => info.defect === d)) throw new TypeError(`unknown SVID defect '${d}'`);
  }
  for (const group of EXCLUSIVE_GROUPS) {
    const hit = group.filter((d) => defects.includes(d));
    if (hit.length > 1) throw new TypeError(`SVID defects ${hit.join(', ')} cannot be combined`);
  }
}
