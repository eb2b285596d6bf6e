/**
 * Key pairs for test certificates, generated with `node:crypto`: synchronously for EC (a tenth of a
 * millisecond), asynchronously for RSA (tens of milliseconds, off the event loop). The `KeyObject`
 * is kept: signing with it needs no import step, so a CA's key is parsed once, at creation.
 */
import {
  createPrivateKey,
  createPublicKey,
  generateKeyPair,
  generateKeyPairSync,
  type KeyObject,
} from 'node:crypto';
import { promisify } from 'node:util';

/**
 * The key types a mesh meets: ECDSA P-256 is what ztunnel and Istio's CA issue; RSA-2048 is what
 * older Istio sidecars may present; P-384 shows that nothing assumes one curve.
 */
export type KeyType = 'ec-p256' | 'ec-p384' | 'rsa-2048';

export const KEY_TYPES: readonly KeyType[] = ['ec-p256', 'ec-p384', 'rsa-2048'];

/** A freshly generated (or loaded) key pair in the encodings the certificate code needs. */
export interface KeyMaterial {
  readonly keyType: KeyType;
  readonly privateKey: KeyObject;
  /** SubjectPublicKeyInfo, DER (RFC 5280 4.1.2.7): what goes into a certificate. */
  readonly spkiDer: Uint8Array;
  /** PKCS#8 PrivateKeyInfo, DER (RFC 5208). */
  readonly pkcs8Der: Uint8Array;
}

const generateKeyPairAsync = promisify(generateKeyPair);

export async function generateKeyMaterial(keyType: KeyType): Promise<KeyMaterial> {
  const { privateKey, publicKey } =
    keyType === 'rsa-2048'
      ? await generateKeyPairAsync('rsa', { modulusLength: 2048, publicExponent: 0x10001 })
      : generateKeyPairSync('ec', { namedCurve: keyType === 'ec-p256' ? 'prime256v1' : 'secp384r1' });
  return {
    keyType,
    privateKey,
    spkiDer: new Uint8Array(publicKey.export({ type: 'spki', format: 'der' })),
    pkcs8Der: new Uint8Array(privateKey.export({ type: 'pkcs8', format: 'der' })),
  };
}

/**
 * Accepts any private key PEM OpenSSL writes (PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY`,
 * PKCS#1 `RSA PRIVATE KEY`) and names its key type; other curves and key sizes are refused so the
 * CA never signs with parameters the rest of the project does not claim to support.
 */
export function keyMaterialFromPem(pem: string): KeyMaterial {
  const privateKey = createPrivateKey(pem);
  const keyType = keyTypeOf(privateKey);
  return {
    keyType,
    privateKey,
    spkiDer: new Uint8Array(createPublicKey(privateKey).export({ type: 'spki', format: 'der' })),
    pkcs8Der: new Uint8Array(privateKey.export({ type: 'pkcs8', format: 'der' })),
  };
}

export function keyTypeOf(key: KeyObject): KeyType {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    if (details?.namedCurve === 'prime256v1') return 'ec-p256';
    if (details?.namedCurve === 'secp384r1') return 'ec-p384';
    throw new TypeError(`unsupported EC curve ${String(details?.namedCurve)}: use P-256 or P-384`);
  }
  if (key.asymmetricKeyType === 'rsa' && details?.modulusLength === 2048) return 'rsa-2048';
  throw new TypeError(
    `unsupported key ${String(key.asymmetricKeyType)} (${String(details?.modulusLength ?? '')} bits): ` +
      'use EC P-256, EC P-384 or RSA-2048',
  );
}
