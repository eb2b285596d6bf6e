/**
 * HBONE's numbers, each with its unit and the place in Istio's ztunnel it comes from
 * (istio/ztunnel, read late 2026; see ../../../docs/spec/hbone.md). Defaults match ztunnel;
 * anything that differs is an option, never a silent change.
 */

/** The HBONE port. ztunnel: `src/config.rs` (`inbound_addr`, port 15008). */
export const HBONE_PORT = 15008;

/** ALPN protocol id of the outer TLS. ztunnel: `src/tls/lib.rs`. */
export const HBONE_ALPN = 'h2';

/**
 * TLS 1.3 suites ztunnel offers, in order (no ChaCha20). ztunnel: `src/tls/lib.rs`
 * (rustls provider restricted to AES-GCM).
 */
export const TLS13_CIPHERSUITES = 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256';

/** Stream flow-control window: 4 MiB. ztunnel: `src/proxy/h2/client.rs`, `src/proxy/h2/server.rs`. */
export const INITIAL_STREAM_WINDOW_BYTES = 4 * 1024 * 1024;

/** Connection flow-control window: 16 MiB on both sides. ztunnel: `src/proxy/h2/*.rs`. */
export const INITIAL_CONNECTION_WINDOW_BYTES = 16 * 1024 * 1024;

/** Largest DATA frame we accept: 1 MiB. ztunnel: `src/proxy/h2/*.rs` (max_frame_size). */
export const MAX_FRAME_SIZE_BYTES = 1024 * 1024;

/** Client's SETTINGS_MAX_HEADER_LIST_SIZE: 16 KiB. ztunnel: `src/proxy/h2/client.rs`. */
export const CLIENT_MAX_HEADER_LIST_BYTES = 16 * 1024;

/** Server's SETTINGS_MAX_HEADER_LIST_SIZE: 64 KiB. ztunnel: `src/proxy/h2/server.rs`. */
export const SERVER_MAX_HEADER_LIST_BYTES = 64 * 1024;

/** Server's SETTINGS_MAX_CONCURRENT_STREAMS. ztunnel: `src/proxy/h2/server.rs`. */
export const SERVER_MAX_CONCURRENT_STREAMS = 200;

/** Streams a client puts on one pooled connection. ztunnel: `src/config.rs` (DEFAULT_POOL_MAX_STREAMS_PER_CONNECTION). */
export const CLIENT_MAX_STREAMS_PER_CONNECTION = 100;

/** First keepalive PING after this idle time, then every interval. ztunnel: `src/proxy/h2.rs`. */
export const PING_INTERVAL_MS = 10_000;

/** No PING ACK within this time tears the connection down. ztunnel: `src/proxy/h2.rs`. */
export const PING_TIMEOUT_MS = 20_000;

/** Time allowed to dial the upstream after a CONNECT. ztunnel: `src/proxy.rs` (CONNECTION_TIMEOUT). */
export const UPSTREAM_CONNECT_TIMEOUT_MS = 10_000;

/**
 * Time allowed for TCP + TLS + the peer's SETTINGS of a new connection. Ours: ztunnel has no TLS
 * handshake timeout; we bound every wait (and a server must, against slowloris clients).
 */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

/** After GOAWAY, time live streams get before the connection is closed. ztunnel: `src/config.rs` (DEFAULT_CONNECTION_TERMINATION_DEADLINE). */
export const DRAIN_DEADLINE_MS = 5_000;

/** Wait for the CONNECT response (`:status`) after sending the request. Ours: ztunnel bounds it by its connect timeout. */
export const CONNECT_RESPONSE_TIMEOUT_MS = 10_000;

/**
 * After a CONNECT response timeout, the PING that checks the connection itself must be answered
 * within this (or `pingTimeoutMs` if shorter), or the connection is destroyed. Ours.
 */
export const CONNECT_TIMEOUT_PROBE_MS = 2_000;

/** Idle connection lifetime on the server side before we close it. Ours (ztunnel relies on the pool's idle timeout). */
export const SERVER_IDLE_TIMEOUT_MS = 5 * 60_000;

/**
 * node:http2 refuses new streams once queued data passes `maxSessionMemory` (MB). With 4 MiB
 * stream windows and 16 MiB connection windows the 10 MB default is too small for bulk traffic.
 */
export const MAX_SESSION_MEMORY_MB = 64;

/**
 * Bytes a connection may queue for a peer that does not read (write-buffered-socket.ts). Flow
 * control bounds DATA to the peer's 16 MiB connection window; the rest is headroom for frames
 * outside flow control. Past it the connection is dropped.
 */
export const MAX_WRITE_BUFFER_BYTES = 32 * 1024 * 1024;

/**
 * Rapid-reset guard (CVE-2023-44487), per connection: streams that end before their CONNECT was
 * answered (reset by the peer, or by nghttp2 for a frame that made it reset them), as a token
 * bucket of this burst, refilled at `EARLY_RESETS_PER_SECOND`. An honest client gives up on a
 * stream before its answer only when the upstream is slow: at most its open streams (200) per
 * connect timeout. Past the bucket: GOAWAY(ENHANCE_YOUR_CALM) and the connection is closed. Ours:
 * nghttp2's own guard (1,000 then 33/s, only for the peer's RST_STREAM) sends GOAWAY but leaves
 * the TCP connection open; ztunnel relies on the h2 crate's (20 streams reset before accepted).
 */
export const EARLY_RESET_BURST = 200;

/** Refill rate of the rapid-reset bucket. Ours (see `EARLY_RESET_BURST`). */
export const EARLY_RESETS_PER_SECOND = 50;

/** HTTP/2 error codes we name (RFC 9113 section 7). */
export const H2_CODES = Object.freeze({
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
});

export function h2CodeName(code: number): string {
  for (const [name, value] of Object.entries(H2_CODES)) if (value === code) return name;
  return `0x${code.toString(16)}`;
}

/** SETTINGS a client sends (ztunnel `src/proxy/h2/client.rs`). */
export const CLIENT_SETTINGS = Object.freeze({
  enablePush: false,
  initialWindowSize: INITIAL_STREAM_WINDOW_BYTES,
  maxFrameSize: MAX_FRAME_SIZE_BYTES,
  maxHeaderListSize: CLIENT_MAX_HEADER_LIST_BYTES,
});

/** SETTINGS a server sends (ztunnel `src/proxy/h2/server.rs`). */
export const SERVER_SETTINGS = Object.freeze({
  maxConcurrentStreams: SERVER_MAX_CONCURRENT_STREAMS,
  initialWindowSize: INITIAL_STREAM_WINDOW_BYTES,
  maxFrameSize: MAX_FRAME_SIZE_BYTES,
  maxHeaderListSize: SERVER_MAX_HEADER_LIST_BYTES,
});
