/**
 * PROXY protocol v1 (HAProxy's text header), the original 5-tuple for the outbound capture port
 * (:15001). ztunnel gets the original destination from the socket (TPROXY keeps it); nothing
 * redirects here, so a client that connects to :15001 states it first:
 * `PROXY TCP4 <src ip> <dst ip> <src port> <dst port>\r\n`, then its bytes.
 */
import { isIP, type Socket } from 'node:net';

/** The longest v1 header (spec section 2.1). */
export const PROXY_V1_MAX = 107;

export class ProxyProtocolError extends Error {
  readonly code = 'ERR_PROXY_PROTOCOL' as const;
  constructor(message: string) {
    super(message);
    this.name = 'ProxyProtocolError';
  }
}

export interface ProxyHeader {
  readonly src: { readonly host: string; readonly port: number };
  readonly dst: { readonly host: string; readonly port: number };
}

export function formatProxyHeader(h: ProxyHeader): string {
  const fam = isIP(h.src.host) === 6 ? 'TCP6' : 'TCP4';
  return `PROXY ${fam} ${h.src.host} ${h.dst.host} ${h.src.port} ${h.dst.port}\r\n`;
}

export function parseProxyHeader(line: string): ProxyHeader {
  const parts = line.split(' ');
  if (parts.length !== 6 || parts[0] !== 'PROXY')
    throw new ProxyProtocolError(`not a PROXY v1 header: "${line}"`);
  const [, fam, sh, dh, sp, dp] = parts as [string, string, string, string, string, string];
  const want = fam === 'TCP4' ? 4 : fam === 'TCP6' ? 6 : 0;
  if (want === 0) throw new ProxyProtocolError(`unsupported family "${fam}"`);
  if (isIP(sh) !== want || isIP(dh) !== want)
    throw new ProxyProtocolError(`bad ${fam} addresses "${sh}" "${dh}"`);
  const port = (s: string): number => {
    const n = Number(s);
    if (!/^\d{1,5}$/.test(s) || n < 1 || n > 65535) throw new ProxyProtocolError(`bad port "${s}"`);
    return n;
  };
  return { src: { host: sh, port: port(sp) }, dst: { host: dh, port: port(dp) } };
}

/** Reads the header off a fresh socket (paused mode); the bytes after it stay buffered. */
export function readProxyHeader(s: Socket, timeoutMs = 5000): Promise<ProxyHeader> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let total = 0;
    const timer = setTimeout(
      () => finish(new ProxyProtocolError(`no PROXY header within ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
    let done = false;
    function finish(err: Error | undefined, h?: ProxyHeader): void {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.removeListener('readable', onReadable);
      s.removeListener('end', onEnd);
      s.removeListener('error', onEnd);
      if (h) resolve(h);
      else reject(err);
    }
    function onReadable(): void {
      for (;;) {
        if (done) return;
        const c = s.read() as Buffer | null;
        if (c === null) return;
        chunks.push(c);
        total += c.length;
        const all = Buffer.concat(chunks, total);
        const eol = all.indexOf('\r\n');
        if (eol === -1) {
          if (total >= PROXY_V1_MAX) finish(new ProxyProtocolError('PROXY header too long'));
          continue;
        }
        if (eol + 2 < all.length) s.unshift(all.subarray(eol + 2));
        try {
          finish(undefined, parseProxyHeader(all.subarray(0, eol).toString('latin1')));
        } catch (err) {
          finish(err as Error);
        }
        return;
      }
    }
    function onEnd(): void {
      finish(new ProxyProtocolError('connection ended before the PROXY header'));
    }
    s.on('readable', onReadable);
    s.on('end', onEnd);
    s.on('error', onEnd);
    onReadable();
  });
}
