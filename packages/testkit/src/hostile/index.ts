// Hostile and broken HTTP/2-over-TLS peers for tests: a frame codec, HPACK, raw clients and
// servers that send exactly the bytes a test asks for, and TCP/TLS probes.
export { type PeerCredentials, peerCredentials, RawH2Client, type RawH2ClientOptions } from './client.js';
export {
  CLIENT_PREFACE,
  continuationFrame,
  dataFrame,
  ErrorCode,
  encodeFrame,
  errorCodeName,
  FRAME_HEADER_BYTES,
  type Frame,
  FrameDecoder,
  FrameFlag,
  FrameType,
  framePayloadBody,
  frameTypeName,
  type Goaway,
  goawayFrame,
  type HeadersFrameOptions,
  headersFrame,
  parseGoaway,
  parseRstStream,
  parseSettings,
  parseWindowUpdate,
  pingFrame,
  priorityFrame,
  rstStreamFrame,
  SettingId,
  settingsAckFrame,
  settingsFrame,
  windowUpdateFrame,
} from './frames.js';
export {
  type DecodedField,
  type EncodeOptions,
  encodeHeaderBlock,
  encodeInteger,
  encodeTableSizeUpdate,
  type HeaderField,
  HpackDecoder,
  HpackError,
  hpackIndexed,
  hpackLiteralWithIndexing,
} from './hpack.js';
export { huffmanDecode, huffmanEncode } from './huffman.js';
export { collectGarbage, type MemoryGrowth, memoryWatch, reportAttack } from './measure.js';
export {
  describeClose,
  HostileTimeoutError,
  type PeerClosed,
  RawH2Peer,
  type RawH2PeerOptions,
  type ReceivedFrame,
  type StreamOutcome,
} from './peer.js';
export {
  captureClientHello,
  type ProbeResult,
  type TcpProbeOptions,
  type TlsProbeOptions,
  type TlsProbeResult,
  tcpProbe,
  tlsProbe,
} from './probes.js';
export { RawH2Server, type RawH2ServerOptions } from './server.js';
