/**
 * Private keys as OpenSSL writes them: PKCS#8 `PRIVATE KEY`, SEC1 `EC PRIVATE KEY` (with or
 * without the `EC PARAMETERS` block `openssl ecparam -genkey` puts first) and PKCS#1
 * `RSA PRIVATE KEY`, in PEM or DER. Only the key types a mesh uses are accepted: ECDSA P-256
 * (ztunnel, Istio), P-384, and RSA of 2048 bits or more (Istio sidecars).
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { InvalidPemError, InvalidPrivateKeyError } from './errors.js';
import { decodePem } from './pem.js';

const KEY_LABELS: Readonly<Record<string, 'pkcs8' | 'sec1' | 'pkcs1'>> = {
  'PRIVATE KEY': 'pkcs8',
  'EC PRIVATE KEY': 'sec1',
  'RSA PRIVATE KEY': 'pkcs1',
};

/** The supported key types. */
export type PrivateKeyType = 'ec-p256' | 'ec-p384' | 'rsa';

/** Checks the key is one we support and names its type. */
export function privateKeyType(key: KeyObject): PrivateKeyType {
  const d = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'ec') {
    if (d?.namedCurve === 'prime256v1') return 'ec-p256';
    if (d?.namedCurve === 'secp384r1') return 'ec-p384';
    throw new InvalidPrivateKeyError(`unsupported EC curve ${String(d?.namedCurve)}: use P-256 or P-384`);
  }
  if (key.asymmetricKeyType === 'rsa') {
    const bits = d?.modulusLength ?? 0;
    if (bits < 2048)
      throw new InvalidPrivateKeyError(`RSA key of ${bits} bits is too small: use 2048 or more`);
    return 'rsa';
  }
  throw new InvalidPrivateKeyError(`unsupported private key type ${String(key.asymmetricKeyType)}`);
}

function fromDer(der: Uint8Array, type: 'pkcs8' | 'sec1' | 'pkcs1'): KeyObject {
  return createPrivateKey({
    key: Buffer.from(der.buffer, der.byteOffset, der.byteLength),
    format: 'der',
    type,
  });
}

/**
 * Parses one private key from PEM text (other blocks, such as certificates, are skipped) or from
 * DER bytes (PKCS#8, SEC1 or PKCS#1, tried in that order). Throws `InvalidPrivateKeyError`.
 */
export function parsePrivateKey(input: string | Uint8Array): KeyObject {
  let key: KeyObject | undefined;
  const isPem =
    typeof input === 'string' ||
    Buffer.from(input.buffer, input.byteOffset, Math.min(input.byteLength, 4096))
      .toString('latin1')
      .includes('-----BEGIN ');
  if (isPem) {
    let blocks: ReturnType<typeof decodePem>;
    try {
      blocks = decodePem(input, [...Object.keys(KEY_LABELS), 'ENCRYPTED PRIVATE KEY']);
    } catch (err) {
      const msg = err instanceof InvalidPemError ? err.message : String(err);
      throw new InvalidPrivateKeyError(`cannot parse PEM encoded private key: ${msg}`, { cause: err });
    }
    if (blocks.length !== 1)
      throw new InvalidPrivateKeyError(`expected one private key, found ${blocks.length}`);
    const block = blocks[0]!;
    const type = KEY_LABELS[block.label];
    if (type === undefined) throw new InvalidPrivateKeyError('encrypted private keys are not supported');
    try {
      key = fromDer(block.der, type);
    } catch (err) {
      throw new InvalidPrivateKeyError(`cannot parse ${block.label}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  } else {
    for (const type of ['pkcs8', 'sec1', 'pkcs1'] as const) {
      try {
        key = fromDer(input as Uint8Array, type);
        break;
      } catch {
        // try the next encoding
      }
    }
    if (key === undefined) throw new InvalidPrivateKeyError('cannot parse DER encoded private key');
  }
  privateKeyType(key);
  return key;
}
