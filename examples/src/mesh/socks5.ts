/**
 * SOCKS5 (RFC 1928), the CONNECT command without authentication: how a "pod" tells its node
 * proxy the original destination here, where nothing redirects its traffic (ztunnel's :15080).
 * The server side reads the greeting and the request and answers once the route is up; the
 * client side is what a test, the demo or the bench uses to play the application.
 */
import * as net from 'node:net';

export const SOCKS_VERSION = 5;

/** RFC 1928 section 6 reply codes. */
export const SocksReply = Object.freeze({
  SUCCEEDED: 0x00,
  GENERAL_FAILURE: 0x01,
  NOT_ALLOWED: 0x02,
  NETWORK_UNREACHABLE: 0x03,
  HOST_UNREACHABLE: 0x04,
  CONNECTION_REFUSED: 0x05,
  TTL_EXPIRED: 0x06,
  COMMAND_NOT_SUPPORTED: 0x07,
  ADDRESS_TYPE_NOT_SUPPORTED: 0x08,
});

const REPLY_NAMES: Readonly<Record<number, string>> = {
  0: 'succeeded',
  1: 'general SOCKS server failure',
  2: 'connection not allowed by ruleset',
  3: 'network unreachable',
  4: 'host unreachable',
  5: 'connection refused',
  6: 'TTL expired',
  7: 'command not supported',
  8: 'address type not supported',
};

export class Socks5Error extends Error {
  readonly code = 'ERR_SOCKS5' as const;
  /** The reply code, when the server sent one. */
  readonly reply: number | undefined;
  constructor(message: string, reply?: number) {
    super(reply === undefined ? message : `${message}: ${REPLY_NAMES[reply] ?? `reply ${reply}`} (${reply})`);
    this.name = 'Socks5Error';
    this.reply = reply;
  }
}

/** Reads exactly `n` bytes in paused mode; what follows stays buffered on the socket. */
function readExactly(s: net.Socket, n: number, signal: { timedOut: boolean }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const cleanup = (): void => {
      s.removeListener('readable', tryRead);
      s.removeListener('end', onEnd);
      s.removeListener('close', onEnd);
      s.removeListener('error', onError);
    };
    function tryRead(): void {
      if (signal.timedOut) return;
      const b = s.read(n) as Buffer | null;
      if (b === null) return;
      cleanup();
      if (b.length < n) reject(new Socks5Error('connection closed during the SOCKS5 handshake'));
      else resolve(b);
    }
    function onEnd(): void {
      cleanup();
      reject(new Socks5Error('connection closed during the SOCKS5 handshake'));
    }
    function onError(err: Error): void {
      cleanup();
      reject(err);
    }
    s.on('readable', tryRead);
    s.on('end', onEnd);
    s.on('close', onEnd);
    s.on('error', onError);
    tryRead();
  });
}

async function withDeadline<T>(
  s: net.Socket,
  ms: number,
  f: (sig: { timedOut: boolean }) => Promise<T>,
): Promise<T> {
  const sig = { timedOut: false };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      sig.timedOut = true;
      reject(new Socks5Error(`no SOCKS5 handshake within ${ms} ms`));
      s.destroy();
    }, ms);
    timer.unref();
  });
  try {
    return await Promise.race([f(sig), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface Socks5Request {
  readonly host: string;
  readonly port: number;
  readonly addressType: 'ipv4' | 'ipv6' | 'domain';
}

function readAddress(atyp: number, s: net.Socket, sig: { timedOut: boolean }): Promise<string> | undefined {
  if (atyp === 0x01) return readExactly(s, 4, sig).then((b) => [...b].join('.'));
  if (atyp === 0x04) {
    return readExactly(s, 16, sig).then((b) => {
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
      return groups.join(':');
    });
  }
  if (atyp === 0x03) {
    return readExactly(s, 1, sig).then((len) =>
      readExactly(s, len[0]!, sig).then((b) => b.toString('latin1')),
    );
  }
  return undefined;
}

/**
 * Server side: reads the greeting (answers "no authentication", or 0xFF when the client does not
 * offer it) and the CONNECT request. Rejects with Socks5Error (after replying when a reply fits).
 */
export function readSocks5Request(s: net.Socket, timeoutMs = 5000): Promise<Socks5Request> {
  return withDeadline(s, timeoutMs, async (sig) => {
    const head = await readExactly(s, 2, sig);
    if (head[0] !== SOCKS_VERSION) throw new Socks5Error(`not SOCKS5 (version byte ${head[0]})`);
    const methods = await readExactly(s, head[1]!, sig);
    if (!methods.includes(0x00)) {
      s.end(Buffer.from([SOCKS_VERSION, 0xff]));
      throw new Socks5Error('the client offers no "no authentication" method');
    }
    s.write(Buffer.from([SOCKS_VERSION, 0x00]));
    const req = await readExactly(s, 4, sig);
    if (req[0] !== SOCKS_VERSION) throw new Socks5Error(`bad request version ${req[0]}`);
    if (req[1] !== 0x01) {
      socks5Reply(s, SocksReply.COMMAND_NOT_SUPPORTED);
      throw new Socks5Error('only CONNECT is supported', SocksReply.COMMAND_NOT_SUPPORTED);
    }
    const atyp = req[3]!;
    const addr = readAddress(atyp, s, sig);
    if (!addr) {
      socks5Reply(s, SocksReply.ADDRESS_TYPE_NOT_SUPPORTED);
      throw new Socks5Error(`address type ${atyp}`, SocksReply.ADDRESS_TYPE_NOT_SUPPORTED);
    }
    const host = await addr;
    const port = (await readExactly(s, 2, sig)).readUInt16BE(0);
    return { host, port, addressType: atyp === 0x01 ? 'ipv4' : atyp === 0x04 ? 'ipv6' : 'domain' };
  });
}

function encodeAddress(host: string): Buffer {
  if (net.isIPv4(host)) return Buffer.from([0x01, ...host.split('.').map(Number)]);
  if (net.isIPv6(host)) {
    const [a = '', b] = host.split('::');
    const left = a ? a.split(':') : [];
    const right = b ? b.split(':') : [];
    const parts =
      b === undefined
        ? left
        : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
    const out = Buffer.alloc(17);
    out[0] = 0x04;
    parts.forEach((g, i) => {
      out.writeUInt16BE(Number.parseInt(g, 16), 1 + i * 2);
    });
    return out;
  }
  const name = Buffer.from(host, 'latin1');
  return Buffer.concat([Buffer.from([0x03, name.length]), name]);
}

/** Writes a reply (bound address 0.0.0.0:0 unless given). */
export function socks5Reply(s: net.Socket, reply: number, bound?: { host: string; port: number }): void {
  if (s.destroyed || s.writableEnded) return;
  const addr = encodeAddress(bound?.host ?? '0.0.0.0');
  const port = Buffer.alloc(2);
  port.writeUInt16BE(bound?.port ?? 0);
  s.write(Buffer.concat([Buffer.from([SOCKS_VERSION, reply, 0x00]), addr, port]));
}

export interface Socks5ConnectOptions {
  /** The SOCKS5 server (the node proxy's :15080). */
  readonly proxy: { readonly host: string; readonly port: number };
  /** Where to go: an IP or a hostname. */
  readonly destination: { readonly host: string; readonly port: number };
  /** Source address to bind: the "pod" IP the proxy identifies us by. */
  readonly localAddress?: string;
  readonly timeoutMs?: number;
}

/** Client side: resolves with the socket once the server replied "succeeded". */
export async function socks5Connect(opts: Socks5ConnectOptions): Promise<net.Socket> {
  const s = net.connect({
    host: opts.proxy.host,
    port: opts.proxy.port,
    allowHalfOpen: true,
    noDelay: true,
    ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
  });
  const timeoutMs = opts.timeoutMs ?? 10_000;
  try {
    await new Promise<void>((resolve, reject) => {
      s.once('connect', () => {
        s.removeListener('error', reject);
        resolve();
      });
      s.once('error', reject);
    });
    await withDeadline(s, timeoutMs, async (sig) => {
      const port = Buffer.alloc(2);
      port.writeUInt16BE(opts.destination.port);
      s.write(
        Buffer.concat([
          Buffer.from([SOCKS_VERSION, 1, 0x00]),
          Buffer.from([SOCKS_VERSION, 0x01, 0x00]),
          encodeAddress(opts.destination.host),
          port,
        ]),
      );
      const method = await readExactly(s, 2, sig);
      if (method[1] !== 0x00) throw new Socks5Error('the server accepts no "no authentication" method');
      const head = await readExactly(s, 4, sig);
      if (head[1] !== SocksReply.SUCCEEDED) {
        throw new Socks5Error(
          `SOCKS5 CONNECT to ${opts.destination.host}:${opts.destination.port} failed`,
          head[1],
        );
      }
      const atyp = head[3]!;
      const addr = readAddress(atyp, s, sig);
      if (!addr) throw new Socks5Error(`bad bound address type ${atyp}`);
      await addr;
      await readExactly(s, 2, sig);
    });
  } catch (err) {
    s.destroy();
    throw err;
  }
  return s;
}
