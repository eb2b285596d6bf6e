import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { certificatesToPem, pemBlocks, TestCa, writeSvidFiles } from '../src/index.js';
import { openssl, opensslVerify } from './openssl.js';

const ID = 'spiffe://example.org/ns/default/sa/foo';
const tempDir = () => mkdtemp(join(tmpdir(), 'testkit-pem-'));

/** openssl verify of `cert.pem` (leaf + intermediates) against `ca.pem`. */
async function verifySvidDir(caFile: string, svidDir: string) {
  const blocks = pemBlocks(await readFile(join(svidDir, 'cert.pem'), 'utf8'));
  const leafFile = join(svidDir, 'leaf-only.pem');
  const untrustedFile = join(svidDir, 'untrusted.pem');
  await writeFile(leafFile, certificatesToPem(blocks.slice(0, 1).map((b) => b.der)));
  await writeFile(untrustedFile, certificatesToPem(blocks.slice(1).map((b) => b.der)));
  return opensslVerify(caFile, leafFile, blocks.length > 1 ? untrustedFile : undefined);
}

describe('PEM files', () => {
  it('writes ca.pem, ca-key.pem, bundle.pem that openssl reads, keys 0600', async () => {
    const dir = await tempDir();
    const ca = await TestCa.create('example.org');
    const paths = await ca.writeFiles(join(dir, 'nested', 'ca'));
    expect(await readFile(paths.caPath, 'utf8')).toBe(ca.root.pem);
    expect(await readFile(paths.bundlePath, 'utf8')).toBe(ca.root.pem);
    expect(await readFile(paths.caKeyPath, 'utf8')).toMatch(/^-----BEGIN PRIVATE KEY-----\n/);
    expect((await stat(paths.caKeyPath)).mode & 0o777).toBe(0o600);
    expect(paths.intermediatePath).toBeUndefined();
    expect(openssl(['x509', '-in', paths.caPath, '-noout', '-ext', 'subjectAltName'])).toMatch(
      /URI:spiffe:\/\/example\.org/,
    );
    // The key file is the certificate's key, as openssl sees it.
    const certPub = openssl(['x509', '-in', paths.caPath, '-noout', '-pubkey']);
    const keyPub = openssl(['pkey', '-in', paths.caKeyPath, '-pubout']);
    expect(keyPub).toBe(certPub);
  });

  it.each([
    false,
    true,
  ])('writes cert.pem + key.pem that openssl verify accepts (intermediate: %s)', async (inter) => {
    const dir = await tempDir();
    const ca = await TestCa.create('example.org', { intermediate: inter });
    const { caPath } = await ca.writeFiles(dir);
    const svid = await ca.mint(ID);
    const paths = await writeSvidFiles(svid, join(dir, 'svid'));
    expect(await readFile(paths.certPath, 'utf8')).toBe(svid.certChainPem);
    expect(pemBlocks(await readFile(paths.certPath, 'utf8'))).toHaveLength(inter ? 2 : 1);
    expect((await stat(paths.keyPath)).mode & 0o777).toBe(0o600);
    const verdict = await verifySvidDir(caPath, join(dir, 'svid'));
    expect(verdict.output).toMatch(/: OK/);
    expect(verdict.ok).toBe(true);
    // The key is the leaf's (openssl compares the public halves).
    expect(openssl(['pkey', '-in', paths.keyPath, '-pubout'])).toBe(
      openssl(['x509', '-in', join(dir, 'svid', 'leaf-only.pem'), '-noout', '-pubkey']),
    );
  });

  it('openssl verify rejects a leaf from another CA of the same trust domain', async () => {
    const dir = await tempDir();
    const ca = await TestCa.create('example.org');
    const other = await TestCa.create('example.org');
    const { caPath } = await ca.writeFiles(dir);
    await writeSvidFiles(await other.mint(ID), join(dir, 'svid'));
    expect((await verifySvidDir(caPath, join(dir, 'svid'))).ok).toBe(false);
  });
});

describe('TestCa.load', () => {
  it('reloads a written CA (with its intermediate) and mints leaves that chain to the same root', async () => {
    const dir = await tempDir();
    const ca = await TestCa.create('example.org', { intermediate: true, keyType: 'ec-p384' });
    const paths = await ca.writeFiles(dir);
    expect(paths.intermediatePath).toBeDefined();
    const loaded = await TestCa.load(dir);
    expect(loaded.trustDomain).toBe('example.org');
    expect(loaded.keyType).toBe('ec-p384');
    expect(loaded.root.pem).toBe(ca.root.pem);
    expect(loaded.intermediate?.pem).toBe(ca.intermediate?.pem);
    const svid = await loaded.mint(ID);
    await writeSvidFiles(svid, join(dir, 'svid'));
    expect((await verifySvidDir(paths.caPath, join(dir, 'svid'))).ok).toBe(true);
    // Defect helpers work on a loaded CA too.
    const notCa = await loaded.mint(ID, { defects: ['intermediate-not-ca'] });
    expect(new X509Certificate(notCa.chainDer[1] ?? new Uint8Array()).ca).toBe(false);
  });

  it.each([
    ['EC P-256, PKCS#8', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'], 'ec-p256'],
    ['EC P-384, PKCS#8', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-384'], 'ec-p384'],
    ['RSA-2048, PKCS#8', ['-newkey', 'rsa:2048'], 'rsa-2048'],
  ] as const)('loads a CA made by openssl req -x509 (%s)', async (_label, keyArgs, keyType) => {
    const dir = await tempDir();
    openssl(
      [
        'req',
        '-x509',
        ...keyArgs,
        '-noenc',
        '-days',
        '30',
        '-keyout',
        'ca-key.pem',
        '-out',
        'ca.pem',
        '-subj',
        '/O=Example Örg/CN=openssl root',
        '-addext',
        'basicConstraints=critical,CA:true',
        '-addext',
        'keyUsage=critical,keyCertSign,cRLSign',
        '-addext',
        'subjectAltName=URI:spiffe://openssl.example',
      ],
      { cwd: dir },
    );
    const ca = await TestCa.load(dir);
    expect(ca.trustDomain).toBe('openssl.example');
    expect(ca.keyType).toBe(keyType);
    expect(ca.intermediate).toBeUndefined();
    const svid = await ca.mint('spiffe://openssl.example/ns/default/sa/foo');
    await writeSvidFiles(svid, join(dir, 'svid'));
    // Issuer name bytes equal openssl's UTF8String subject, so name chaining holds.
    const verdict = await verifySvidDir(join(dir, 'ca.pem'), join(dir, 'svid'));
    expect(verdict.output).toMatch(/: OK/);
    const leaf = new X509Certificate(svid.leafDer);
    expect(leaf.checkIssued(new X509Certificate(ca.root.der))).toBe(true);
    expect(leaf.issuer).toBe(new X509Certificate(ca.root.der).subject);
  });

  it('loads SEC1 and PKCS#1 key files, and takes the trust domain from options when the root has no SAN', async () => {
    const dir = await tempDir();
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca-key.pem'], { cwd: dir });
    expect(await readFile(join(dir, 'ca-key.pem'), 'utf8')).toMatch(/BEGIN EC PRIVATE KEY/);
    openssl(['req', '-x509', '-key', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=no san'], {
      cwd: dir,
    });
    await expect(TestCa.load(dir)).rejects.toThrow(/pass opts.trustDomain/);
    const ca = await TestCa.load(dir, { trustDomain: 'given.example' });
    expect(ca.trustDomain).toBe('given.example');
    await writeSvidFiles(await ca.mint('spiffe://given.example/x'), join(dir, 'svid'));
    expect((await verifySvidDir(join(dir, 'ca.pem'), join(dir, 'svid'))).ok).toBe(true);

    const rsaDir = await tempDir();
    openssl(['genrsa', '-traditional', '-out', 'ca-key.pem', '2048'], { cwd: rsaDir });
    expect(await readFile(join(rsaDir, 'ca-key.pem'), 'utf8')).toMatch(/BEGIN RSA PRIVATE KEY/);
    openssl(['req', '-x509', '-key', 'ca-key.pem', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=rsa'], {
      cwd: rsaDir,
    });
    expect((await TestCa.load(rsaDir, { trustDomain: 'rsa.example' })).keyType).toBe('rsa-2048');
  });

  it('refuses a key that does not match, a non-CA certificate, and a missing directory', async () => {
    const dir = await tempDir();
    const a = await TestCa.create('a.example');
    const b = await TestCa.create('b.example');
    await writeFile(join(dir, 'ca.pem'), a.root.pem);
    await writeFile(join(dir, 'ca-key.pem'), b.root.privateKeyPem);
    await expect(TestCa.load(dir)).rejects.toThrow(/does not match/);

    const leafDir = await tempDir();
    const svid = await a.mint('spiffe://a.example/x');
    await writeFile(join(leafDir, 'ca.pem'), certificatesToPem([svid.leafDer]));
    await writeFile(join(leafDir, 'ca-key.pem'), svid.keyPem);
    await expect(TestCa.load(leafDir)).rejects.toThrow(/not a CA certificate/);

    await expect(TestCa.load(join(dir, 'absent'))).rejects.toThrow(/ENOENT/);
  });
});
