import type { KeyType } from './key-type.js';
import type { SvidDefect } from './svid-defects.js';

/** Options for `TestCa.mint`. */
export interface MintOptions {
  /** Key of the leaf; default 'ec-p256' (what ztunnel uses), whatever the CA's own key type. */
  keyType?: KeyType;
  /** The clock to mint against; default the CA's fixed `now`, else the current time. */
  now?: Date;
  /** Default now - 1 minute, so a peer whose clock lags a little still accepts a fresh leaf. */
  notBefore?: Date;
  /** Default now + `ttlMs`. */
  notAfter?: Date;
  /** Lifetime from now; default 24 hours, Istio's workload certificate lifetime. */
  ttlMs?: number;
  /** Switches that make the SVID wrong (or unusual); see `SVID_DEFECTS`. */
  defects?: readonly SvidDefect[];
}

/** A minted leaf SVID with its key, in every encoding the tests and TLS stacks want. */
export interface MintedSvid {
  /** The SPIFFE ID asked for (the URI SAN, unless a defect changed it). */
  id: string;
  leafDer: Uint8Array;
  /** Leaf first, then intermediates up to (never including) the root: what a TLS peer sends. */
  chainDer: Uint8Array[];
  /** `chainDer` as PEM: leaf, then intermediates. */
  certChainPem: string;
  /** PKCS#8 `PRIVATE KEY`. */
  keyPem: string;
  /** EC keys only: SEC1 `EC PRIVATE KEY`, as `openssl ecparam -genkey` and `openssl ec` write. */
  keyPemSec1?: string;
  /** PKCS#8 DER. */
  keyDer: Uint8Array;
  notBefore: Date;
  notAfter: Date;
}

/** A CA certificate with its key. */
export interface CaCertificate {
  der: Uint8Array;
  pem: string;
  /** PKCS#8 `PRIVATE KEY`. */
  privateKeyPem: string;
}
