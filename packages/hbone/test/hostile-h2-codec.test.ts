/**
 * The hostile peers are only as good as their HTTP/2 codec: these tests hold the frame coder,
 * HPACK and Huffman to RFC 7541's examples and to what node's own HTTP/2 stack sends and accepts.
 */
import * as http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import {
  dataFrame,
  encodeFrame,
  encodeHeaderBlock,
  encodeInteger,
  type Frame,
  FrameDecoder,
  FrameType,
  HpackDecoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
  parseGoaway,
  peerCredentials,
  pingFrame,
  RawH2Client,
  rstStreamFrame,
  settingsFrame,
  windowUpdateFrame,
} from '@hbone/testkit';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { caFor } from './fixtures.js';
import { useHarness } from './harness.js';

const h = useHarness();

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('Huffman (RFC 7541 Appendix B)', () => {
  // RFC 7541 C.4.1-C.4.3 and C.6.1.
  const vectors: Array<[string, string]> = [
    ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
    ['no-cache', 'a8eb 1064 9cbf'],
    ['custom-key', '25a8 49e9 5ba9 7d7f'],
    ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
    ['302', '6402'],
    ['private', 'aec3 771a 4b'],
    ['https://www.example.com', '9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3'],
  ];
  it.each(vectors)('%s encodes and decodes as in RFC 7541', (text, code) => {
    expect(huffmanEncode(Buffer.from(text)).toString('hex')).toBe(hex(code).toString('hex'));
    expect(huffmanDecode(hex(code)).toString()).toBe(text);
  });

  it('round-trips any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
        expect(huffmanDecode(huffmanEncode(bytes)).equals(Buffer.from(bytes))).toBe(true);
      }),
    );
  });

  it('rejects padding that is not a prefix of EOS, and padding of 8 bits or more', () => {
    // 'a' is 00011 (5 bits): padding with zeros is invalid.
    expect(() => huffmanDecode(Buffer.from([0b00011000]))).toThrow(/padding/);
    expect(huffmanDecode(Buffer.from([0b00011111])).toString()).toBe('a');
    expect(() => huffmanDecode(Buffer.from([0b00011111, 0xff]))).toThrow(/padding/);
  });
});

describe('HPACK decoder (RFC 7541 Appendix C)', () => {
  it('decodes the request examples with and without Huffman, keeping the dynamic table', () => {
    for (const blocks of [
      [
        '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
        '8286 84be 5808 6e6f 2d63 6163 6865',
        '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
      ],
      [
        '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
        '8286 84be 5886 a8eb 1064 9cbf',
        '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
      ],
    ]) {
      const d = new HpackDecoder();
      expect(d.decode(hex(blocks[0]!))).toEqual([
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/'],
        [':authority', 'www.example.com'],
      ]);
      expect(d.decode(hex(blocks[1]!))).toEqual([
        [':method', 'GET'],
        [':scheme', 'http'],
        [':path', '/'],
        [':authority', 'www.example.com'],
        ['cache-control', 'no-cache'],
      ]);
      expect(d.decode(hex(blocks[2]!))).toEqual([
        [':method', 'GET'],
        [':scheme', 'https'],
        [':path', '/index.html'],
        [':authority', 'www.example.com'],
        ['custom-key', 'custom-value'],
      ]);
      expect(d.dynamicTable).toEqual([
        ['custom-key', 'custom-value'],
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ]);
    }
  });

  it('evicts by size: a 256-byte table keeps only what fits (RFC 7541 C.5)', () => {
    const d = new HpackDecoder(256);
    d.decode(
      hex(`4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
           2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70 6c65 2e63 6f6d`),
    );
    expect(d.dynamicTable.map(([n]) => n)).toEqual(['location', 'date', 'cache-control', ':status']);
    // C.5.2: ":status: 307" evicts ":status: 302".
    expect(d.decode(hex('4803 3330 37c1 c0bf'))).toEqual([
      [':status', '307'],
      ['cache-control', 'private'],
      ['date', 'Mon, 21 Oct 2013 20:13:21 GMT'],
      ['location', 'https://www.example.com'],
    ]);
    expect(d.dynamicTable.map(([n, v]) => `${n}: ${v}`)).toEqual([
      ':status: 307',
      'location: https://www.example.com',
      'date: Mon, 21 Oct 2013 20:13:21 GMT',
      'cache-control: private',
    ]);
  });

  it('rejects truncated blocks, bad indexes and oversized integers', () => {
    expect(() => new HpackDecoder().decode(hex('be'))).toThrow(HpackError); // index 62: empty table
    expect(() => new HpackDecoder().decode(hex('0085f1e3'))).toThrow(HpackError); // name cut short
    expect(() => new HpackDecoder().decode(hex('ffffffffffff0f'))).toThrow(/overflow/);
    expect(() => new HpackDecoder().decode(hex('3fe21f'))).toThrow(/above the limit/); // size update 4097
  });

  it('the literal-only encoder round-trips through the decoder, with and without Huffman', () => {
    const field = fc.tuple(
      fc.string({ minLength: 1, maxLength: 20 }),
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
    );
    fc.assert(
      fc.property(fc.array(field, { maxLength: 10 }), fc.boolean(), (fields, huffman) => {
        const latin1 = fields.map(([n, v]) => [Buffer.from(n).toString('latin1'), v] as [string, string]);
        const block = encodeHeaderBlock(latin1, { huffman });
        const decoder = new HpackDecoder();
        expect(decoder.decode(block)).toEqual(latin1);
        expect(decoder.dynamicTable).toEqual([]); // literals without indexing never touch it
      }),
    );
  });

  it('encodes integers as RFC 7541 C.1 does', () => {
    expect(encodeInteger(10, 5)).toEqual([0x0a]);
    expect(encodeInteger(1337, 5)).toEqual([0x1f, 0x9a, 0x0a]);
    expect(encodeInteger(42, 8)).toEqual([0x2a]);
  });
});

describe('frames', () => {
  it('reassembles frames split at every byte boundary', () => {
    const wire = Buffer.concat([
      settingsFrame([[4, 65535]]),
      pingFrame(7n),
      dataFrame(1, Buffer.alloc(300, 1), true),
      rstStreamFrame(3, 8),
      windowUpdateFrame(0, 1000),
    ]);
    const summary = (frames: Frame[]): string =>
      frames.map((f) => `${f.type}/${f.flags}/${f.streamId}/${f.payload.toString('hex')}`).join(' ');
    const whole = new FrameDecoder().push(wire);
    expect(whole.map((f) => f.type)).toEqual([
      FrameType.SETTINGS,
      FrameType.PING,
      FrameType.DATA,
      FrameType.RST_STREAM,
      FrameType.WINDOW_UPDATE,
    ]);
    for (let cut = 1; cut < wire.length; cut++) {
      const d = new FrameDecoder();
      const frames = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
      expect(summary(frames)).toBe(summary(whole));
      expect(d.buffered).toBe(0);
    }
  });

  it('refuses a frame longer than its limit before buffering it', () => {
    const d = new FrameDecoder(16_384);
    expect(() => d.push(encodeFrame(FrameType.DATA, 0, 1, Buffer.alloc(16_385)).subarray(0, 9))).toThrow(
      /exceeds/,
    );
  });
});

describe('against node:http2', () => {
  it('decodes what nghttp2 sends (Huffman, dynamic table across responses) and nghttp2 reads what we send', async () => {
    const ca = await caFor('cluster.local');
    const seen: http2.IncomingHttpHeaders[] = [];
    const server = http2.createSecureServer({ ...peerCredentials(h.server.minted, ca), allowHTTP1: false });
    server.on('stream', (stream, headers) => {
      seen.push(headers);
      stream.respond({
        ':status': 203,
        'x-repeated': 'the same value every time, so nghttp2 indexes it',
        'x-counter': String(seen.length),
        'x-latin': 'ÿ-ü-é',
      });
      stream.end('body');
    });
    // nghttp2 stops reading a connection it sent GOAWAY on (see hostile-protocol-errors): destroy
    // the sessions, or close() would wait for them.
    const sessions = new Set<http2.ServerHttp2Session>();
    server.on('session', (s) => sessions.add(s.on('error', () => {})));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    h.defer(() => {
      for (const s of sessions) s.destroy();
      return new Promise<void>((r) => server.close(() => r()));
    });
    const client = await RawH2Client.connect({ port: (server.address() as AddressInfo).port });
    h.defer(() => client.destroy());

    for (let i = 1; i <= 3; i++) {
      const id = client.request(
        [
          [':method', 'GET'],
          [':scheme', 'https'],
          [':path', `/r${i}`],
          [':authority', 'example.test'],
          ['x-literal', `value ${i}`],
        ],
        { endStream: true },
      );
      const outcome = await client.outcome(id);
      expect(outcome).toMatchObject({ kind: 'response', status: 203 });
      const fields = outcome.kind === 'response' ? Object.fromEntries(outcome.headers) : {};
      expect(fields).toMatchObject({
        'x-repeated': 'the same value every time, so nghttp2 indexes it',
        'x-counter': String(i),
        'x-latin': 'ÿ-ü-é',
      });
      await client.waitFor((f) => f.streamId === id && f.type === FrameType.DATA && (f.flags & 1) === 1);
      expect(client.dataOf(id).toString()).toBe('body');
    }
    expect(seen.map((s) => [s[':path'], s['x-literal']])).toEqual([
      ['/r1', 'value 1'],
      ['/r2', 'value 2'],
      ['/r3', 'value 3'],
    ]);
    // nghttp2 did use its dynamic table: later responses are shorter than the first.
    const sizes = client.frames.filter((f) => f.type === FrameType.HEADERS).map((f) => f.payload.length);
    expect(sizes[2]!).toBeLessThan(sizes[0]!);

    // And a GOAWAY we provoke parses: DATA on an idle stream is a connection error (RFC 9113 5.1).
    client.send(dataFrame(99, 'x'));
    const goaway = parseGoaway(await client.waitFor((f) => f.type === FrameType.GOAWAY));
    expect(goaway).toMatchObject({ lastStreamId: 5, errorCode: 1 });
    expect(goaway.debug).toMatch(/idle/);
  });
});
