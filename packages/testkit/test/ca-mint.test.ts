import { createPrivateKey, createPublicKey, sign, verify, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KEY_TYPES, type KeyType, pemBlocks, TestCa } from '../src/index.js';
import { opensslText } from './openssl.js';

const ID = 'spiffe://example.org/ns/default/sa/foo';

function x509(der: Uint8Array): X509Certificate {
  return new X509Certificate(der);
}

/** The key signs what the leaf's public key verifies: the pair belongs together. */
function keyMatchesLeaf(keyPem: string, leafDer: Uint8Array): boolean {
  const data = Buffer.from('hbone');
  const key = createPrivateKey(keyPem);
  const hash = key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'sha384' : 'sha256';
  return verify(hash, data, x509(leafDer).publicKey, sign(hash, data, key));
}

describe('TestCa.create', () => {
  it('makes a self-signed root that is a SPIFFE signing certificate', async () => {
    const ca = await TestCa.create('example.org');
    const root = x509(ca.root.der);
    expect(root.ca).toBe(true);
    expect(root.verify(root.publicKey)).toBe(true);
    expect(root.checkIssued(root)).toBe(true);
    expect(root.subjectAltName).toBe('URI:spiffe://example.org');
    const t = opensslText(ca.root.der);
    expect(t.extensions.get('X509v3 Basic Constraints')).toEqual({
      critical: true,
      value: 'CA:TRUE, pathlen:0',
    });
    expect(t.extensions.get('X509v3 Key Usage')).toEqual({
      critical: true,
      value: 'Certificate Sign, CRL Sign',
    });
    expect(t.extensions.has('X509v3 Subject Key Identifier')).toBe(true);
    expect(t.subject).toBe('O = SPIFFE, OU = example.org, CN = hbone testkit root CA');
    expect(ca.trustDomain).toBe('example.org');
    expect(ca.keyType).toBe('ec-p256');
    expect(ca.bundlePem).toBe(ca.root.pem);
    expect(ca.chainPem).toBe('');
    expect(ca.intermediate).toBeUndefined();
    expect(createPublicKey(createPrivateKey(ca.root.privateKeyPem)).equals(root.publicKey)).toBe(true);
  });

  it('adds an intermediate with pathLen 0, signed by the root, in chainPem only', async () => {
    const ca = await TestCa.create('example.org', { intermediate: true });
    const intermediateDer = ca.intermediate?.der;
    if (!intermediateDer) throw new Error('no intermediate');
    const [root, intermediate] = [x509(ca.root.der), x509(intermediateDer)];
    expect(intermediate.ca).toBe(true);
    expect(intermediate.verify(root.publicKey)).toBe(true);
    expect(intermediate.checkIssued(root)).toBe(true);
    expect(opensslText(intermediateDer).extensions.get('X509v3 Basic Constraints')?.value).toBe(
      'CA:TRUE, pathlen:0',
    );
    expect(opensslText(ca.root.der).extensions.get('X509v3 Basic Constraints')?.value).toBe(
      'CA:TRUE, pathlen:1',
    );
    expect(ca.chainPem).toBe(ca.intermediate?.pem);
    expect(ca.bundlePem).toBe(ca.root.pem);
    expect(pemBlocks(ca.bundlePem)).toHaveLength(1);
  });

  it.each([
    ['ec-p256', 'ecdsa-with-SHA256'],
    ['ec-p384', 'ecdsa-with-SHA384'],
    ['rsa-2048', 'sha256WithRSAEncryption'],
  ] as const)('signs with a %s CA key using %s', async (keyType, algorithm) => {
    const ca = await TestCa.create('example.org', { keyType, intermediate: true });
    expect(ca.keyType).toBe(keyType);
    const svid = await ca.mint(ID);
    expect(opensslText(svid.leafDer).signatureAlgorithm).toBe(algorithm);
    expect(opensslText(ca.root.der).signatureAlgorithm).toBe(algorithm);
    expect(x509(svid.leafDer).verify(x509(ca.intermediate?.der ?? new Uint8Array()).publicKey)).toBe(true);
  });

  it('anchors CA validity on a fixed clock', async () => {
    const now = new Date('2030-06-01T12:00:00Z');
    const ca = await TestCa.create('example.org', { now });
    const root = x509(ca.root.der);
    expect(new Date(root.validFrom).getTime()).toBeLessThan(now.getTime());
    expect(new Date(root.validTo).getTime()).toBeGreaterThan(now.getTime() + 5 * 365 * 86_400_000);
    const svid = await ca.mint(ID);
    expect(svid.notBefore.toISOString()).toBe('2030-06-01T11:59:00.000Z');
    expect(svid.notAfter.toISOString()).toBe('2030-06-02T12:00:00.000Z');
  });
});

describe('TestCa.mint', () => {
  it('mints a valid leaf: one URI SAN, cA=false, digitalSignature, server+client EKU', async () => {
    const ca = await TestCa.create('example.org', { intermediate: true });
    const before = Date.now();
    const svid = await ca.mint(ID);
    const leaf = x509(svid.leafDer);
    expect(svid.id).toBe(ID);
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(leaf.ca).toBe(false);
    expect(leaf.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']);
    expect(leaf.subject).toBe('O=SPIFFE');
    const t = opensslText(svid.leafDer);
    expect(t.extensions.get('X509v3 Basic Constraints')).toEqual({ critical: true, value: 'CA:FALSE' });
    expect(t.extensions.get('X509v3 Key Usage')).toEqual({ critical: true, value: 'Digital Signature' });
    expect(t.issuer).toBe('O = SPIFFE, OU = example.org, CN = hbone testkit intermediate CA');
    // Validity: now - 1 min .. now + 24 h, to the second.
    expect(svid.notBefore.getTime()).toBe(new Date(leaf.validFrom).getTime());
    expect(svid.notAfter.getTime()).toBe(new Date(leaf.validTo).getTime());
    expect(Math.abs(svid.notBefore.getTime() - (before - 60_000))).toBeLessThan(2_000);
    expect(Math.abs(svid.notAfter.getTime() - (before + 86_400_000))).toBeLessThan(2_000);
  });

  it('returns the chain leaf first, then intermediates, never the root', async () => {
    const ca = await TestCa.create('example.org', { intermediate: true });
    const svid = await ca.mint(ID);
    expect(svid.chainDer).toHaveLength(2);
    expect(Buffer.from(svid.chainDer[0] ?? []).equals(Buffer.from(svid.leafDer))).toBe(true);
    expect(Buffer.from(svid.chainDer[1] ?? []).equals(Buffer.from(ca.intermediate?.der ?? []))).toBe(true);
    const blocks = pemBlocks(svid.certChainPem);
    expect(blocks.map((b) => b.label)).toEqual(['CERTIFICATE', 'CERTIFICATE']);
    expect(blocks.map((b) => Buffer.from(b.der).toString('hex'))).toEqual(
      svid.chainDer.map((d) => Buffer.from(d).toString('hex')),
    );
    const [leaf, intermediate, root] = [svid.leafDer, ca.intermediate?.der ?? [], ca.root.der].map((d) =>
      x509(new Uint8Array(d)),
    );
    expect(leaf?.verify(intermediate?.publicKey ?? root!.publicKey)).toBe(true);
    expect(intermediate?.verify(root!.publicKey)).toBe(true);
    expect(leaf?.verify(root!.publicKey)).toBe(false);

    const flat = await (await TestCa.create('example.org')).mint(ID);
    expect(flat.chainDer).toHaveLength(1);
  });

  it.each(
    KEY_TYPES,
  )('mints a %s leaf whose key matches, in PKCS#8 (and SEC1 for EC)', async (keyType: KeyType) => {
    const ca = await TestCa.create('example.org');
    const svid = await ca.mint(ID, { keyType });
    expect(svid.keyPem).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect(keyMatchesLeaf(svid.keyPem, svid.leafDer)).toBe(true);
    const fromDer = createPrivateKey({ key: Buffer.from(svid.keyDer), format: 'der', type: 'pkcs8' });
    expect(fromDer.equals(createPrivateKey(svid.keyPem))).toBe(true);
    const t = opensslText(svid.leafDer);
    if (keyType === 'rsa-2048') {
      expect(svid.keyPemSec1).toBeUndefined();
      expect(t.text).toMatch(/Public-Key: \(2048 bit\)/);
      // keyEncipherment is allowed for RSA leaves (X509-SVID 4.3).
      expect(t.extensions.get('X509v3 Key Usage')?.value).toBe('Digital Signature, Key Encipherment');
    } else {
      expect(svid.keyPemSec1).toMatch(/^-----BEGIN EC PRIVATE KEY-----\n/);
      expect(createPrivateKey(svid.keyPemSec1 ?? '').equals(fromDer)).toBe(true);
      expect(t.text).toMatch(keyType === 'ec-p256' ? /NIST CURVE: P-256/ : /NIST CURVE: P-384/);
      expect(t.extensions.get('X509v3 Key Usage')?.value).toBe('Digital Signature');
    }
  });

  it('honours notBefore, notAfter, ttlMs and now, and writes post-2049 dates as GeneralizedTime', async () => {
    const ca = await TestCa.create('example.org');
    const now = new Date('2031-01-01T00:00:00.789Z');
    const short = await ca.mint(ID, { now, ttlMs: 3_600_000 });
    expect(short.notBefore.toISOString()).toBe('2030-12-31T23:59:00.000Z');
    expect(short.notAfter.toISOString()).toBe('2031-01-01T01:00:00.000Z');
    const explicit = await ca.mint(ID, {
      notBefore: new Date('2025-01-01T00:00:00Z'),
      notAfter: new Date('2060-01-01T00:00:00Z'),
    });
    expect(opensslText(explicit.leafDer).text).toMatch(/Not After : Jan {2}1 00:00:00 2060 GMT/);
    expect(new Date(x509(explicit.leafDer).validTo).toISOString()).toBe('2060-01-01T00:00:00.000Z');
    await expect(ca.mint(ID, { notBefore: new Date(2), notAfter: new Date(1) })).rejects.toThrow(RangeError);
  });

  it('mints malformed IDs verbatim: validating them is the verifier under test', async () => {
    const ca = await TestCa.create('example.org');
    for (const id of ['spiffe://EXAMPLE.org/a', 'spiffe://example.org/a/../b', 'not a uri']) {
      expect(x509((await ca.mint(id)).leafDer).subjectAltName).toBe(`URI:${id}`);
    }
  });

  it('accepts a 2048-byte ID (long form DER lengths)', async () => {
    const ca = await TestCa.create('example.org');
    const id = `spiffe://example.org/${'a'.repeat(2048 - 'spiffe://example.org/'.length)}`;
    expect(id).toHaveLength(2048);
    const svid = await ca.mint(id);
    expect(x509(svid.leafDer).subjectAltName).toBe(`URI:${id}`);
    expect(opensslText(svid.leafDer).extensions.get('X509v3 Subject Alternative Name')?.value).toBe(
      `URI:${id}`,
    );
  });

  it('gives every leaf a distinct positive serial', async () => {
    const ca = await TestCa.create('example.org');
    const serials = await Promise.all(
      Array.from({ length: 100 }, async () => x509((await ca.mint(ID)).leafDer).serialNumber),
    );
    expect(new Set(serials).size).toBe(100);
    for (const s of serials) expect(Number.parseInt(s.slice(0, 2), 16)).toBeLessThan(0x80);
  });

  it('mints hundreds of leaves fast', async () => {
    const ca = await TestCa.create('example.org', { intermediate: true });
    await ca.mint(ID); // warm up
    const n = 300;
    const start = performance.now();
    for (let i = 0; i < n; i++) await ca.mint(`spiffe://example.org/w/${i}`);
    const msPerMint = (performance.now() - start) / n;
    console.log(`TestCa.mint: ${msPerMint.toFixed(2)} ms per P-256 leaf (${n} sequential)`);
    expect(msPerMint).toBeLessThan(10); // generous: CI machines vary; typically well under 1 ms
  });
});
