import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SVID_DEFECTS, TestCa } from '@hbone/testkit';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  InvalidPrivateKeyError,
  InvalidSvidError,
  parsePrivateKey,
  SpiffeError,
  verifyX509Svid,
  X509Bundle,
  X509Svid,
} from '../src/index.js';

const ID = 'spiffe://example.org/ns/default/sa/app';
let ca: TestCa;
let dir: string;

beforeAll(async () => {
  ca = await TestCa.create('example.org', { intermediate: true });
  dir = await mkdtemp(join(tmpdir(), 'hbone-svid-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('X509Svid: loading', () => {
  it('loads leaf + intermediates + PKCS#8 key from PEM, with the ID and expiry', async () => {
    const m = await ca.mint(ID);
    const svid = X509Svid.parse(m.certChainPem, m.keyPem);
    expect(svid.id.toString()).toBe(ID);
    expect(svid.intermediates).toHaveLength(1);
    expect(svid.keyType).toBe('ec-p256');
    expect(svid.expiresAt.getTime()).toBe(m.notAfter.getTime());
    expect(svid.certChainPem).toBe(m.certChainPem);
    expect(svid.privateKeyPem).toBe(m.keyPem);
    expect(svid.chainDer().map((d) => Buffer.from(d))).toEqual(m.chainDer.map((d) => Buffer.from(d)));
  });

  it.each([
    'ec-p256',
    'ec-p384',
    'rsa-2048',
  ] as const)('loads %s keys as PKCS#8, SEC1 and DER', async (keyType) => {
    const m = await ca.mint(ID, { keyType });
    const keys = [m.keyPem, m.keyDer, ...(m.keyPemSec1 ? [m.keyPemSec1] : [])];
    for (const key of keys) {
      const svid = X509Svid.parse(m.certChainPem, key);
      expect(svid.keyType).toBe(keyType === 'rsa-2048' ? 'rsa' : keyType);
    }
    expect(X509Svid.fromDer(m.chainDer, m.keyDer).id.toString()).toBe(ID);
    expect(X509Svid.fromDer(m.chainDer, parsePrivateKey(m.keyPem)).id.toString()).toBe(ID);
  });

  it('loads from files (cert and key may be one file)', async () => {
    const m = await ca.mint(ID);
    const cert = join(dir, 'cert.pem');
    const both = join(dir, 'both.pem');
    await writeFile(cert, m.certChainPem);
    await writeFile(join(dir, 'key.pem'), m.keyPem);
    await writeFile(both, m.certChainPem + m.keyPem);
    expect((await X509Svid.load(cert, join(dir, 'key.pem'))).id.toString()).toBe(ID);
    expect((await X509Svid.load(both, both)).id.toString()).toBe(ID);
  });

  it('refuses a key that does not match the leaf', async () => {
    const [a, b] = await Promise.all([ca.mint(ID), ca.mint(ID)]);
    expect(() => X509Svid.parse(a.certChainPem, b.keyPem)).toThrow(InvalidPrivateKeyError);
    expect(() => X509Svid.parse(a.certChainPem, b.keyPem)).toThrow(
      'leaf certificate does not match private key',
    );
  });

  it('refuses unsupported keys: RSA under 2048 bits, P-521, Ed25519, encrypted, public', () => {
    const pems = [
      generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
      generateKeyPairSync('ec', { namedCurve: 'secp521r1' }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
      }),
      generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }),
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({
        type: 'pkcs8',
        format: 'pem',
        cipher: 'aes-256-cbc',
        passphrase: 'x',
      }),
      generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({
        type: 'spki',
        format: 'pem',
      }),
    ];
    for (const pem of pems) expect(() => parsePrivateKey(String(pem))).toThrow(InvalidPrivateKeyError);
  });

  it('checks the leaf rules on load', async () => {
    for (const info of SVID_DEFECTS) {
      if (
        ![
          'leaf-ca',
          'key-cert-sign',
          'crl-sign',
          'two-uri-sans',
          'no-uri-san',
          'non-spiffe-uri',
          'no-path',
        ].includes(info.defect)
      )
        continue;
      const m = await ca.mint(ID, { defects: [info.defect] });
      expect(() => X509Svid.parse(m.certChainPem, m.keyPem), info.defect).toThrow(InvalidSvidError);
    }
  });

  it('accepts the valid unusual leaves: a DNS SAN beside the URI, an empty subject with a critical SAN', async () => {
    for (const defect of ['dns-san', 'empty-subject-critical-san'] as const) {
      const m = await ca.mint(ID, { defects: [defect] });
      expect(X509Svid.parse(m.certChainPem, m.keyPem).id.toString()).toBe(ID);
    }
  });

  it('refuses an intermediate that is not a CA', async () => {
    const m = await ca.mint(ID, { defects: ['intermediate-not-ca'] });
    expect(() => X509Svid.parse(m.certChainPem, m.keyPem)).toThrow(
      'intermediate 1 certificate must have CA flag set to true',
    );
  });

  it('turns garbage into typed errors, never a crash (property)', async () => {
    const m = await ca.mint(ID);
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 400 }),
          fc.nat(m.certChainPem.length).map((n) => m.certChainPem.slice(0, n)),
        ),
        fc.oneof(
          fc.constant(m.keyPem),
          fc.string({ maxLength: 200 }),
          fc.nat(m.keyPem.length).map((n) => m.keyPem.slice(0, n)),
        ),
        (cert, key) => {
          try {
            X509Svid.parse(cert, key);
          } catch (err) {
            expect(err).toBeInstanceOf(SpiffeError);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('an X509Svid verifies against its CA bundle', async () => {
    const m = await ca.mint(ID);
    const svid = X509Svid.parse(m.certChainPem, m.keyPem);
    expect(
      verifyX509Svid(svid.chainDer(), X509Bundle.fromPem('example.org', ca.bundlePem)).id.equals(svid.id),
    ).toBe(true);
  });
});
