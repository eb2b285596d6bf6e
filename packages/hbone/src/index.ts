// @hbone/hbone: HBONE client and server primitives, byte-compatible with Istio's ztunnel.
// The path of a byte: client-session.ts (TLS + h2) -> connect-request.ts (CONNECT) ->
// tunnel.ts (the stream as a Duplex) -> join.ts (to a TCP socket); server side: server.ts ->
// incoming-tunnel.ts -> forward.ts.

export * from './authority.js';
export * from './baggage.js';
export * from './client-hello.js';
export * from './client-session.js';
export * from './codec-errors.js';
export * from './connect-request.js';
export * from './double-hbone.js';
export * from './errors.js';
export * from './forward.js';
export * from './forwarded.js';
export * from './forwarded-network.js';
export * from './inbound-budget.js';
export * from './incoming-tunnel.js';
export * from './join.js';
export * from './liveness.js';
export * from './server.js';
export * from './settings.js';
export * from './sni.js';
export * from './traceparent.js';
export * from './tunnel.js';
export * from './write-buffered-socket.js';
