import type { Duplex } from 'node:stream';
import {
  connectOver,
  type HboneClientOptions,
  type HboneClientSession,
  type OpenOptions,
} from './client-session.js';
import type { TunnelRequest } from './connect-request.js';
import { type ForwardOptions, forwardHandler } from './forward.js';
import type { IncomingTunnel } from './incoming-tunnel.js';
import type { TunnelHandler } from './server.js';
import { formatTraceparent, newTraceparent } from './traceparent.js';
import type { HboneTunnel } from './tunnel.js';

export interface DoubleHboneRequest extends TunnelRequest {
  /**
   * `x-forwarded-network` of the inner CONNECT. ztunnel sends its *own* (the sender's) network
   * here; the destination compares it with its own to see that the request crossed a gateway.
   */
  forwardedNetwork: string;
}

export interface DoubleHboneTunnel {
  /** The inner tunnel: application bytes flow here. */
  readonly tunnel: HboneTunnel;
  /** The inner session (fresh TLS 1.3 + h2, never pooled); closed with the tunnel. */
  readonly inner: HboneClientSession;
  /** The outer tunnel to the gateway, carrying the inner TLS bytes. */
  readonly outer: HboneTunnel;
}

/**
 * Double HBONE (HBONE-WIRE.md "Double HBONE"): through an outer session to an east-west
 * gateway, CONNECT to the service hostname, run a fresh mutual TLS 1.3 + h2 session inside
 * that stream verifying the *remote workload's* identities (`inner`), and CONNECT again with
 * the same authority plus `x-forwarded-network`. Closing the inner tunnel closes the inner
 * session and ends the outer tunnel.
 */
export async function openDoubleHbone(
  outerSession: HboneClientSession,
  request: DoubleHboneRequest,
  inner: HboneClientOptions,
  opts: OpenOptions = {},
): Promise<DoubleHboneTunnel> {
  const { forwardedNetwork, ...rest } = request;
  // One traceparent per downstream connection, on both CONNECTs (ztunnel OutboundConnection::id).
  const outerRequest: TunnelRequest = {
    ...rest,
    traceparent: rest.traceparent === undefined ? formatTraceparent(newTraceparent()) : rest.traceparent,
  };
  const outer = await outerSession.open(outerRequest, opts);
  let innerSession: HboneClientSession;
  try {
    innerSession = await connectOver(outer as Duplex, inner);
  } catch (err) {
    outer.destroy();
    throw err;
  }
  let tunnel: HboneTunnel;
  try {
    tunnel = await innerSession.open({ ...outerRequest, forwardedNetwork }, opts);
  } catch (err) {
    innerSession.destroy();
    outer.destroy();
    throw err;
  }
  tunnel.once('close', () => {
    void innerSession.close().then(() => {
      if (!outer.destroyed) outer.end();
    });
  });
  innerSession.once('close', () => {
    if (!outer.writableEnded) outer.end();
  });
  return { tunnel, inner: innerSession, outer };
}

export interface GatewayOptions extends Omit<ForwardOptions, 'resolve'> {
  /**
   * Maps the outer CONNECT (hostname authority, peer identity, SNI-free) to the node proxy that
   * owns the destination, normally its :15008. Undefined -> 503.
   */
  route: (
    tunnel: IncomingTunnel,
  ) => { host: string; port: number } | undefined | Promise<{ host: string; port: number } | undefined>;
}

/**
 * The server side of double HBONE at an east-west gateway: accept the outer CONNECT and hand
 * the inner bytes (still TLS) to the destination's proxy untouched. The gateway terminates only
 * the outer TLS and never sees application bytes.
 */
export function gatewayHandler(opts: GatewayOptions): TunnelHandler {
  return forwardHandler({ ...opts, resolve: opts.route });
}
