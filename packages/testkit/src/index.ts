export {
  arbInvalidSpiffeIdString,
  arbIstioSpiffeIdString,
  arbPathSegment,
  arbSpiffeIdString,
  arbTrustDomainName,
  type InvalidSpiffeId,
  MAX_SPIFFE_ID_LENGTH,
  MAX_TRUST_DOMAIN_LENGTH,
  type SpiffeIdArbitraryOptions,
  type StringSource,
} from './arbitraries.js';
export { type LoadCaOptions, TestCa, type TestCaOptions } from './ca.js';
export { createFaultProxy, type FaultMode, type FaultProxy, type FaultProxyOptions } from './fault-proxy.js';
export * from './hostile/index.js';
export { INVALID_ID_MESSAGES, INVALID_ID_REASONS, type InvalidIdReason } from './invalid-id-reasons.js';
export { KEY_TYPES, type KeyType } from './key-type.js';
export type { CaCertificate, MintedSvid, MintOptions } from './minted-svid.js';
export { certificatesToPem, derToPem, pemBlocks } from './pem.js';
export {
  BUNDLE_FILE,
  CA_FILE,
  CA_KEY_FILE,
  type CaFilePaths,
  CERT_FILE,
  INTERMEDIATE_FILE,
  INTERMEDIATE_KEY_FILE,
  KEY_FILE,
  type SvidFilePaths,
  writeSvidFiles,
} from './pem-files.js';
export {
  DNS_SAN_NAME,
  SVID_DEFECTS,
  type SvidDefect,
  type SvidDefectInfo,
  UNKNOWN_CRITICAL_EXTENSION_OID,
} from './svid-defects.js';
