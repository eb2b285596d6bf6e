import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodePem, decodePemCertificates, encodePem, InvalidPemError } from '../src/index.js';

const label = fc.constantFrom('CERTIFICATE', 'PRIVATE KEY', 'EC PRIVATE KEY', 'X509 CRL');

describe('PEM', () => {
  it('round-trips any bytes under any label (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(label, fc.uint8Array({ minLength: 1, maxLength: 600 })), {
          minLength: 1,
          maxLength: 4,
        }),
        (blocks) => {
          const text = blocks.map(([l, d]) => encodePem(l, d)).join('');
          const back = decodePem(text);
          expect(back.map((b) => [b.label, Buffer.from(b.der)])).toEqual(
            blocks.map(([l, d]) => [l, Buffer.from(d)]),
          );
        },
      ),
    );
  });

  it('writes 64-column lines, as OpenSSL does', () => {
    const text = encodePem('CERTIFICATE', new Uint8Array(100).fill(7));
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('-----BEGIN CERTIFICATE-----');
    expect(lines[1]).toHaveLength(64);
    expect(lines.at(-1)).toBe('-----END CERTIFICATE-----');
  });

  it('skips text between blocks, and blocks with other labels when asked for one', () => {
    const text = `Bag Attributes\n${encodePem('PRIVATE KEY', new Uint8Array([1]))}junk\n${encodePem('CERTIFICATE', new Uint8Array([2]))}`;
    expect(decodePemCertificates(text).map((d) => [...d])).toEqual([[2]]);
    expect(decodePem(text)).toHaveLength(2);
  });

  it.each([
    ['no block', 'hello', /no PEM block found/],
    [
      'no wanted block',
      encodePem('PRIVATE KEY', new Uint8Array([1])),
      /no PEM block found with label CERTIFICATE/,
    ],
    ['a truncated block', '-----BEGIN CERTIFICATE-----\nAAAA\n', /truncated/],
    ['a truncated BEGIN line', '-----BEGIN CERTIF', /truncated/],
    [
      'two BEGINs',
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      /truncated/,
    ],
    ['bad base64', '-----BEGIN CERTIFICATE-----\nAA*A\n-----END CERTIFICATE-----\n', /invalid base64/],
    [
      'base64 with a bad length',
      '-----BEGIN CERTIFICATE-----\nAAAAA\n-----END CERTIFICATE-----\n',
      /invalid base64/,
    ],
    [
      'non-canonical base64',
      '-----BEGIN CERTIFICATE-----\nAB==\n-----END CERTIFICATE-----\n',
      /invalid base64/,
    ],
    ['an empty block', '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n', /empty/],
    [
      'headers',
      '-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n',
      /headers/,
    ],
    ['a mismatched END label', '-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n', /truncated/],
  ])('rejects %s with InvalidPemError', (_name, text, message) => {
    expect(() => decodePemCertificates(text)).toThrow(InvalidPemError);
    expect(() => decodePemCertificates(text)).toThrow(message);
  });

  it('never throws anything but InvalidPemError on garbage or truncation, and never hangs (property)', () => {
    const valid = encodePem(
      'CERTIFICATE',
      new Uint8Array(300).map((_, i) => i),
    );
    const start = Date.now();
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 500 }),
          fc.uint8Array({ maxLength: 500 }),
          fc.nat(valid.length).map((n) => valid.slice(0, n)),
          fc
            .tuple(fc.nat(valid.length - 1), fc.string({ minLength: 1, maxLength: 2 }))
            .map(([at, s]) => valid.slice(0, at) + s + valid.slice(at + 1)),
          fc.nat(1000).map((n) => '-----BEGIN '.repeat(n)),
        ),
        (input) => {
          try {
            decodePem(input);
          } catch (err) {
            expect(err).toBeInstanceOf(InvalidPemError);
          }
        },
      ),
      { numRuns: 1000 },
    );
    expect(Date.now() - start).toBeLessThan(10_000);
  });
});
