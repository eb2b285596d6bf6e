/**
 * Assembles and signs an X.509 v3 certificate (RFC 5280 4.1) from pre-encoded parts.
 */
import { randomFillSync, sign } from 'node:crypto';
import { bitString, sequence, TAG, tlv, unsignedInteger, x509Time } from './der.js';
import type { KeyMaterial, KeyType } from './key-type.js';

export interface CertificateParts {
  issuerNameDer: Uint8Array;
  /** `EMPTY_NAME_DER` for an empty subject. */
  subjectNameDer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
  spkiDer: Uint8Array;
  /** Extension DERs, in order. */
  extensions: readonly Uint8Array[];
  /** The issuer's key (the subject's own for a self-signed root). */
  signer: KeyMaterial;
}

/** An empty RDNSequence: the empty subject DN of RFC 5280 4.1.2.6. */
export const EMPTY_NAME_DER = new Uint8Array([0x30, 0x00]);

// AlgorithmIdentifier DERs. ECDSA: RFC 5758 3.2 (parameters MUST be absent). RSA: RFC 4055 5 /
// RFC 3279 2.2.1 (parameters MUST be NULL). The hash follows the key: SHA-384 for P-384.
const ALGORITHM_IDENTIFIERS: Record<KeyType, Uint8Array> = {
  'ec-p256': Uint8Array.from([0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]),
  'ec-p384': Uint8Array.from([0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03]),
  'rsa-2048': Uint8Array.from([
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05, 0x00,
  ]),
};
const HASHES: Record<KeyType, string> = { 'ec-p256': 'sha256', 'ec-p384': 'sha384', 'rsa-2048': 'sha256' };
const VERSION_3 = tlv(TAG.CONTEXT_0, Uint8Array.from([0x02, 0x01, 0x02]));

/**
 * RFC 5280 4.1.2.2: positive, at most 20 octets, unique per CA. 16 random bytes with the top bit
 * cleared and the next one set: always positive, always 16 octets, 126 bits of entropy.
 */
function randomSerial(): Uint8Array {
  const bytes = randomFillSync(new Uint8Array(16));
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x40;
  return unsignedInteger(bytes);
}

/** Returns the DER certificate. node's ECDSA signatures are DER Ecdsa-Sig-Value already, as X.509 wants. */
export function signCertificate(p: CertificateParts): Uint8Array {
  const algorithm = ALGORITHM_IDENTIFIERS[p.signer.keyType];
  const tbs = sequence(
    VERSION_3,
    randomSerial(),
    algorithm,
    p.issuerNameDer,
    sequence(x509Time(p.notBefore), x509Time(p.notAfter)),
    p.subjectNameDer,
    p.spkiDer,
    ...(p.extensions.length > 0 ? [tlv(TAG.CONTEXT_3, sequence(...p.extensions))] : []),
  );
  const signature = sign(HASHES[p.signer.keyType], tbs, p.signer.privateKey);
  return sequence(tbs, algorithm, bitString(signature));
}

/** The instant a certificate will actually carry: X.509 times have whole seconds. */
export const truncateToSeconds = (d: Date): Date => new Date(Math.floor(d.getTime() / 1000) * 1000);
