import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import {
  type ClientHelloInfo,
  parseClientHello,
  type ReadClientHelloOptions,
  readClientHello,
} from '../src/client-hello.js';
import { ClientHelloTimeoutError, InvalidClientHelloError } from '../src/codec-errors.js';
import { alpnExtension, buildClientHello, sniExtension, versionsExtension } from './oracles/client-hello.js';

const OPENSSL = '/usr/bin/openssl';
const hasOpenssl = existsSync(OPENSSL);

interface Peeked {
  info?: ClientHelloInfo;
  error?: unknown;
  socket: net.Socket;
  /** Whatever the socket yields after the peek (the bytes put back, then anything later). */
  rest: () => Promise<Buffer>;
  /** Listeners readClientHello left behind, per event (should all be 0). */
  leftover: Record<string, number>;
}

/**
 * A 127.0.0.1 server whose first connection is peeked with readClientHello; `dial` connects a
 * client to it. Everything is torn down by `close`.
 */
async function peekFirstConnection(
  dial: (port: number) => { close(): void },
  options?: ReadClientHelloOptions,
): Promise<Peeked> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
  const client = dial(port);
  const socket = await accepted;
  socket.on('error', () => {});
  const events = ['readable', 'end', 'close', 'error', 'data'] as const;
  const before = events.map((e) => socket.listenerCount(e));
  let info: ClientHelloInfo | undefined;
  let error: unknown;
  try {
    info = await readClientHello(socket, options);
  } catch (err) {
    error = err;
  }
  const leftover = Object.fromEntries(events.map((e, i) => [e, socket.listenerCount(e) - before[i]!]));
  const rest = async () => {
    const chunks: Buffer[] = [];
    const want = info?.bytesConsumed ?? 1;
    for (;;) {
      const got = Buffer.concat(chunks);
      if (got.length >= want || socket.readableEnded || socket.destroyed) return got;
      const chunk = socket.read() as Buffer | null;
      if (chunk !== null) chunks.push(chunk);
      else await new Promise((r) => socket.once('readable', r));
    }
  };
  cleanups.push(() => {
    client.close();
    socket.destroy();
    server.close();
  });
  return { ...(info === undefined ? {} : { info }), error, socket, rest, leftover };
}

const cleanups: Array<() => void> = [];
afterAll(() => {
  for (const c of cleanups) c();
});

function nodeTlsClient(options: tls.ConnectionOptions) {
  return (port: number) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...options });
    s.on('error', () => {});
    return { close: () => s.destroy() };
  };
}

function rawClient(write: (s: net.Socket) => void) {
  return (port: number) => {
    const s = net.connect(port, '127.0.0.1', () => write(s));
    s.setNoDelay(true);
    s.on('error', () => {});
    return { close: () => s.destroy() };
  };
}

describe('readClientHello on real ClientHellos from Node (tls.connect)', () => {
  it('an HBONE-style client: IP target, no SNI, ALPN h2, TLS 1.3 only, ztunnel suites', async () => {
    const p = await peekFirstConnection(
      nodeTlsClient({
        servername: '',
        ALPNProtocols: ['h2'],
        minVersion: 'TLSv1.3',
        maxVersion: 'TLSv1.3',
        ciphers: 'TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256',
      }),
    );
    expect(p.error).toBeUndefined();
    expect(p.info!.sni).toBeUndefined();
    expect(p.info!.alpn).toEqual(['h2']);
    expect(p.info!.supportedVersions).toEqual([0x0304]);
    expect(p.info!.legacyVersion).toBe(0x0303);
    expect(p.info!.cipherSuites.slice(0, 2)).toEqual([0x1302, 0x1301]);
    expect(p.info!.cipherSuites).not.toContain(0x1303); // no ChaCha20 (HBONE-WIRE.md "TLS")
    // The bytes were put back: the socket yields the same ClientHello again.
    const again = await p.rest();
    expect(parseClientHello(again)).toEqual(p.info);
  });

  it('with a servername: SNI is read', async () => {
    const p = await peekFirstConnection(
      nodeTlsClient({ servername: 'reviews.default.svc.cluster.local', ALPNProtocols: ['h2'] }),
    );
    expect(p.info).toMatchObject({ sni: 'reviews.default.svc.cluster.local', alpn: ['h2'] });
    expect(p.info!.supportedVersions).toContain(0x0304);
  });

  it('a default client (TLS 1.2 and 1.3, no ALPN)', async () => {
    const p = await peekFirstConnection(nodeTlsClient({ servername: 'x.example' }));
    expect(p.info).toMatchObject({ sni: 'x.example', alpn: [] });
    expect(p.info!.supportedVersions).toEqual(expect.arrayContaining([0x0304, 0x0303]));
  });
});

describe.skipIf(!hasOpenssl)('readClientHello on a real ClientHello from openssl s_client', () => {
  it('-servername x -alpn h2', async () => {
    let child: ChildProcess | undefined;
    const p = await peekFirstConnection((port) => {
      child = spawn(
        OPENSSL,
        ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'x', '-alpn', 'h2'],
        {
          stdio: ['pipe', 'ignore', 'ignore'],
        },
      );
      return { close: () => child?.kill() };
    });
    expect(p.error).toBeUndefined();
    expect(p.info).toMatchObject({ sni: 'x', alpn: ['h2'], legacyVersion: 0x0303 });
    expect(p.info!.supportedVersions).toContain(0x0304);
    expect(p.info!.cipherSuites).toContain(0x1301);
  });
});

describe.skipIf(!hasOpenssl)('after the peek, the socket goes to a TLS server untouched', () => {
  let dir: string;
  let key: Buffer;
  let cert: Buffer;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'hbone-client-hello-'));
    execFileSync(
      OPENSSL,
      [
        'req',
        '-x509',
        '-newkey',
        'ec',
        '-pkeyopt',
        'ec_paramgen_curve:prime256v1',
        '-nodes',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
      ],
      { stdio: 'ignore' },
    );
    key = readFileSync(join(dir, 'key.pem'));
    cert = readFileSync(join(dir, 'cert.pem'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('handshake completes with ALPN h2 and bytes flow both ways', async () => {
    const tlsServer = tls.createServer({ key, cert, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3' }, (s) => {
      s.on('data', (d) => s.write(Buffer.concat([Buffer.from('echo:'), d])));
    });
    const server = net.createServer(async (socket) => {
      const info = await readClientHello(socket);
      expect(info.sni).toBe('gateway.example');
      tlsServer.emit('connection', socket);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    try {
      const client = tls.connect({
        host: '127.0.0.1',
        port,
        servername: 'gateway.example',
        ALPNProtocols: ['h2'],
        minVersion: 'TLSv1.3',
        ca: cert,
        checkServerIdentity: () => undefined,
      });
      await new Promise<void>((resolve, reject) => {
        client.once('secureConnect', resolve);
        client.once('error', reject);
      });
      expect(client.alpnProtocol).toBe('h2');
      expect(client.getProtocol()).toBe('TLSv1.3');
      client.write('ping');
      const [reply] = (await new Promise((r) => client.once('data', (d) => r([d])))) as [Buffer];
      expect(reply.toString()).toBe('echo:ping');
      client.destroy();
    } finally {
      server.close();
      tlsServer.close();
    }
  });
});

describe('readClientHello on hostile or slow peers', () => {
  const hello = buildClientHello({
    legacyVersion: 0x0303,
    random: new Uint8Array(32),
    sessionId: new Uint8Array(0),
    cipherSuites: [0x1302, 0x1301],
    compression: Uint8Array.of(0),
    extensions: [sniExtension('slow.example'), alpnExtension(['h2']), versionsExtension([0x0304])],
  });

  it('a ClientHello that arrives one byte at a time', async () => {
    const p = await peekFirstConnection(
      rawClient((s) => {
        let i = 0;
        const next = () => {
          if (i < hello.length) s.write(hello.subarray(i, ++i), () => setTimeout(next, 1));
        };
        next();
      }),
    );
    expect(p.info).toMatchObject({ sni: 'slow.example', alpn: ['h2'], bytesConsumed: hello.length });
    expect(Buffer.compare(await p.rest(), Buffer.from(hello))).toBe(0);
  });

  it('plain HTTP is rejected at once, and its bytes are still readable', async () => {
    const p = await peekFirstConnection(rawClient((s) => s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n')));
    expect(p.error).toBeInstanceOf(InvalidClientHelloError);
    expect((p.error as InvalidClientHelloError).code).toBe('ERR_INVALID_CLIENT_HELLO');
    expect((await p.rest()).toString('latin1')).toMatch(/^GET \/ HTTP\/1\.1/);
  });

  it('a silent peer times out with ClientHelloTimeoutError', async () => {
    const started = Date.now();
    const p = await peekFirstConnection(
      rawClient(() => {}),
      { timeoutMs: 100 },
    );
    expect(p.error).toBeInstanceOf(ClientHelloTimeoutError);
    expect((p.error as ClientHelloTimeoutError).code).toBe('ERR_CLIENT_HELLO_TIMEOUT');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a peer that stalls half way through times out, and the partial bytes are put back', async () => {
    const p = await peekFirstConnection(
      rawClient((s) => s.write(hello.subarray(0, 20))),
      { timeoutMs: 100 },
    );
    expect(p.error).toBeInstanceOf(ClientHelloTimeoutError);
    expect(p.socket.readableLength).toBe(20);
  });

  it('a peer that closes half way through', async () => {
    const p = await peekFirstConnection(rawClient((s) => s.end(hello.subarray(0, 30))));
    expect(p.error).toBeInstanceOf(InvalidClientHelloError);
    expect((p.error as InvalidClientHelloError).reason).toMatch(/connection ended/);
  });

  it('a hello larger than maxBytes', async () => {
    const p = await peekFirstConnection(
      rawClient((s) => s.write(hello)),
      { maxBytes: 40 },
    );
    expect(p.error).toBeInstanceOf(InvalidClientHelloError);
    expect((p.error as InvalidClientHelloError).reason).toMatch(/40 bytes/);
  });

  it('a record length that promises more than maxBytes never waits for it', async () => {
    // A syntactically valid start whose record claims 16384 bytes; with maxBytes 100 the reader must
    // give up once 100 bytes are in, not buffer 16 KiB.
    const start = Uint8Array.from([22, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc, ...new Uint8Array(200)]);
    const p = await peekFirstConnection(
      rawClient((s) => s.write(start)),
      { maxBytes: 100, timeoutMs: 2000 },
    );
    expect(p.error).toBeInstanceOf(InvalidClientHelloError);
  });

  it('a full-size record dribbled one byte per tick is scanned a bounded number of times', async () => {
    // A hostile peer's cheapest CPU attack: a 16 KiB record one byte at a time. The reader must not
    // re-scan (and re-copy) the whole buffer per byte.
    const stream = new PassThrough();
    const body = new Uint8Array(16380);
    const bytes = Uint8Array.from([22, 3, 1, 0x40, 0x00, 1, 0, 0x3f, 0xfc, ...body.subarray(0, 16380)]);
    const concat = vi.spyOn(Buffer, 'concat');
    try {
      const pending = readClientHello(stream, { timeoutMs: 20_000 }).catch((e: unknown) => e);
      for (const b of bytes) {
        stream.write(Uint8Array.of(b));
        await new Promise((r) => setImmediate(r));
      }
      const err = await pending;
      expect(err).toBeInstanceOf(InvalidClientHelloError); // an all-zero body is not a ClientHello
      expect(concat.mock.calls.length).toBeLessThan(32);
      expect(stream.readableLength).toBe(bytes.length); // and every byte was put back
    } finally {
      concat.mockRestore();
    }
  });

  it('an abort signal ends the wait with its reason', async () => {
    const ac = new AbortController();
    const reason = new Error('shutting down');
    setTimeout(() => ac.abort(reason), 20);
    const p = await peekFirstConnection(
      rawClient(() => {}),
      { signal: ac.signal, timeoutMs: 5000 },
    );
    expect(p.error).toBe(reason);
  });

  it('an already ended socket is rejected without waiting', async () => {
    const s = new net.Socket();
    s.destroy();
    await expect(readClientHello(s)).rejects.toBeInstanceOf(InvalidClientHelloError);
  });

  it('the timer is unref()ed and cleared, and listeners removed, on every path', async () => {
    const setSpy = vi.spyOn(globalThis, 'setTimeout');
    const clearSpy = vi.spyOn(globalThis, 'clearTimeout');
    try {
      const paths = [
        await peekFirstConnection(rawClient((s) => s.write(hello))),
        await peekFirstConnection(rawClient((s) => s.write('nope'))),
        await peekFirstConnection(
          rawClient(() => {}),
          { timeoutMs: 30 },
        ),
        await peekFirstConnection(rawClient((s) => s.end(hello.subarray(0, 3)))),
      ];
      const timers = setSpy.mock.results
        .map((r) => r.value as NodeJS.Timeout)
        .filter((t) => t !== undefined && typeof t.hasRef === 'function');
      expect(timers.length).toBeGreaterThanOrEqual(paths.length);
      for (const t of timers.slice(-paths.length)) {
        expect(t.hasRef()).toBe(false);
        expect(clearSpy).toHaveBeenCalledWith(t);
      }
      for (const p of paths) {
        expect(p.leftover).toEqual({ readable: 0, end: 0, close: 0, error: 0, data: 0 });
      }
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
    }
  });
});
