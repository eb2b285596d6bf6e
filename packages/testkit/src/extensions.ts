/**
 * Certificate extensions as DER (RFC 5280 4.2). Fixed-shape ones are encoded by `@peculiar/x509`
 * once and memoised; the subjectAltName, different in every leaf, is concatenated by hand.
 */
import { createHash } from 'node:crypto';
import { extension, ia5GeneralName, readTlv, sequence, TAG, tlv } from './der.js';
import { UNKNOWN_CRITICAL_EXTENSION_OID } from './svid-defects.js';
import { x509 } from './x509.js';

const raw = (e: x509.Extension): Uint8Array => new Uint8Array(e.rawData);

// OBJECT IDENTIFIER DERs: id-ce-subjectAltName, id-ce-subjectKeyIdentifier, id-ce-authorityKeyIdentifier.
const OID_SAN = Uint8Array.from([0x06, 0x03, 0x55, 0x1d, 0x11]);
const OID_SKI = Uint8Array.from([0x06, 0x03, 0x55, 0x1d, 0x0e]);
const OID_AKI = Uint8Array.from([0x06, 0x03, 0x55, 0x1d, 0x23]);

export const KeyUsage = {
  digitalSignature: x509.KeyUsageFlags.digitalSignature,
  keyEncipherment: x509.KeyUsageFlags.keyEncipherment,
  keyCertSign: x509.KeyUsageFlags.keyCertSign,
  cRLSign: x509.KeyUsageFlags.cRLSign,
} as const;

const memo = new Map<string, Uint8Array>();
function memoised(key: string, make: () => Uint8Array): Uint8Array {
  let der = memo.get(key);
  if (!der) {
    der = make();
    memo.set(key, der);
  }
  return der;
}

/** RFC 5280 4.2.1.9: basicConstraints, always critical here (it MUST be in CA certificates). */
export function basicConstraints(ca: boolean, pathLength?: number): Uint8Array {
  return memoised(`bc:${ca}:${pathLength}`, () =>
    raw(new x509.BasicConstraintsExtension(ca, pathLength, true)),
  );
}

/** RFC 5280 4.2.1.3 and X509-SVID 4.3: keyUsage, MUST be critical on every SVID. */
export function keyUsage(flags: number): Uint8Array {
  return memoised(`ku:${flags}`, () => raw(new x509.KeyUsagesExtension(flags, true)));
}

/** X509-SVID 4.4: leaves SHOULD carry EKU with id-kp-serverAuth and id-kp-clientAuth. */
export function serverAndClientAuth(): Uint8Array {
  return memoised('eku', () =>
    raw(
      new x509.ExtendedKeyUsageExtension(
        [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
        false,
      ),
    ),
  );
}

/** A critical extension nobody recognises, with a DER NULL (05 00) value. */
export function unknownCriticalExtension(): Uint8Array {
  return memoised('unknown', () =>
    raw(new x509.Extension(UNKNOWN_CRITICAL_EXTENSION_OID, true, Uint8Array.from([0x05, 0x00]))),
  );
}

export interface SanEntry {
  type: 'uri' | 'dns';
  value: string;
}

/** RFC 5280 4.2.1.6: critical exactly when the subject is empty. */
export function subjectAltName(entries: readonly SanEntry[], critical: boolean): Uint8Array {
  const names = entries.map((e) => ia5GeneralName(e.type === 'uri' ? TAG.SAN_URI : TAG.SAN_DNS, e.value));
  return extension(OID_SAN, critical, sequence(...names));
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 of the subjectPublicKey BIT STRING value (without the unused-bits byte). */
export function keyIdentifier(spkiDer: Uint8Array): Uint8Array {
  const spki = readTlv(spkiDer, 0);
  const algorithm = readTlv(spkiDer, spki.contentStart);
  const key = readTlv(spkiDer, algorithm.end);
  return new Uint8Array(
    createHash('sha1')
      .update(spkiDer.subarray(key.contentStart + 1, key.end))
      .digest(),
  );
}

export const subjectKeyIdentifier = (keyId: Uint8Array): Uint8Array =>
  extension(OID_SKI, false, tlv(TAG.OCTET_STRING, keyId));

/** AuthorityKeyIdentifier ::= SEQUENCE { keyIdentifier [0] IMPLICIT KeyIdentifier } (RFC 5280 4.2.1.1). */
export const authorityKeyIdentifier = (keyId: Uint8Array): Uint8Array =>
  extension(OID_AKI, false, sequence(tlv(0x80, keyId)));
