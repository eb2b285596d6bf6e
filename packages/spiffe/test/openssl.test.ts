/**
 * Certificates made by the openssl command line, the way an operator would make them by hand,
 * load and verify, and work in a real TLS 1.3 handshake. EC P-256 (SEC1 and PKCS#8 keys) and
 * RSA 2048 (PKCS#8 and PKCS#1 keys).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  authorizeId,
  BundleSet,
  enforceServerPeers,
  peerIdentity,
  tlsClientOptions,
  tlsServerOptions,
  verifyX509Svid,
  X509Bundle,
  X509Svid,
} from '../src/index.js';
import { answerPings, exchange, listen, Tracker } from './tls-harness.js';

const OPENSSL = '/usr/bin/openssl';
const TD = 'example.org';
const dir = mkdtempSync(join(tmpdir(), 'hbone-openssl-'));
const tracker = new Tracker();
afterEach(() => tracker.closeAll());
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function openssl(...args: string[]): void {
  execFileSync(OPENSSL, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

const read = (f: string) => readFileSync(join(dir, f), 'utf8');

/** A self-signed CA with the trust domain's URI SAN, as `openssl req -x509` makes it. */
function makeCa(name: string, keyArgs: string[], extra: string[] = []): void {
  openssl(
    'req',
    '-x509',
    '-newkey',
    ...keyArgs,
    '-nodes',
    '-keyout',
    `${name}-ca.key`,
    '-out',
    `${name}-ca.pem`,
    '-days',
    '2',
    '-subj',
    `/O=${TD}`,
    '-addext',
    `subjectAltName=URI:spiffe://${TD}`,
    '-addext',
    'basicConstraints=critical,CA:true',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
    ...extra.flatMap((e) => ['-addext', e]),
  );
}

/** A leaf signed by the CA with an `-extfile` holding the X509-SVID extensions. */
function signLeaf(name: string, ca: string, keyFile: string, id: string, dns?: string): void {
  writeFileSync(
    join(dir, `${name}.ext`),
    [
      `subjectAltName=critical,URI:${id}${dns ? `,DNS:${dns}` : ''}`,
      'basicConstraints=critical,CA:false',
      'keyUsage=critical,digitalSignature,keyEncipherment',
      'extendedKeyUsage=serverAuth,clientAuth',
      '',
    ].join('\n'),
  );
  openssl('req', '-new', '-key', keyFile, '-subj', '/O=SPIFFE', '-out', `${name}.csr`);
  openssl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${ca}-ca.pem`,
    '-CAkey',
    `${ca}-ca.key`,
    '-set_serial',
    '0x1234',
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  );
}

describe.skipIf(!existsSync(OPENSSL))('certificates made by openssl', () => {
  beforeAll(() => {
    makeCa('ec', ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256']);
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-out', 'ec-leaf-params.key');
    openssl('ec', '-in', 'ec-leaf-params.key', '-out', 'ec-leaf.key');
    openssl('pkcs8', '-topk8', '-nocrypt', '-in', 'ec-leaf.key', '-out', 'ec-leaf.p8');
    signLeaf('ec-leaf', 'ec', 'ec-leaf.key', `spiffe://${TD}/ns/default/sa/ec`);
    makeCa('rsa', ['rsa:2048']);
    openssl('genrsa', '-out', 'rsa-leaf.key', '2048');
    openssl('rsa', '-in', 'rsa-leaf.key', '-traditional', '-out', 'rsa-leaf.pkcs1');
    signLeaf('rsa-leaf', 'rsa', 'rsa-leaf.key', `spiffe://${TD}/ns/default/sa/rsa`);
  });

  it('EC P-256: SEC1 (with and without EC PARAMETERS) and PKCS#8 keys load and verify', () => {
    expect(read('ec-leaf-params.key')).toContain('BEGIN EC PARAMETERS');
    expect(read('ec-leaf.key')).toContain('BEGIN EC PRIVATE KEY');
    expect(read('ec-leaf.p8')).toContain('BEGIN PRIVATE KEY');
    const bundle = X509Bundle.fromPem(TD, read('ec-ca.pem'));
    for (const key of ['ec-leaf-params.key', 'ec-leaf.key', 'ec-leaf.p8']) {
      const svid = X509Svid.parse(read('ec-leaf.pem'), read(key));
      expect(svid.keyType).toBe('ec-p256');
      expect(svid.leaf.serialNumber).toBe('1234');
      expect(verifyX509Svid(svid.chainDer(), bundle).id.toString()).toBe(`spiffe://${TD}/ns/default/sa/ec`);
    }
  });

  it('RSA 2048: PKCS#8 and PKCS#1 keys load and verify', () => {
    expect(read('rsa-leaf.pkcs1')).toContain('BEGIN RSA PRIVATE KEY');
    const bundle = X509Bundle.fromPem(TD, read('rsa-ca.pem'));
    for (const key of ['rsa-leaf.key', 'rsa-leaf.pkcs1']) {
      const svid = X509Svid.parse(read('rsa-leaf.pem'), read(key));
      expect(svid.keyType).toBe('rsa');
      expect(verifyX509Svid(svid.chainDer(), bundle).id.toString()).toBe(`spiffe://${TD}/ns/default/sa/rsa`);
    }
    // The bundle round-trips through the SPIFFE bundle format with an RSA authority.
    expect(X509Bundle.fromJwks(TD, bundle.toJwks()).equals(bundle)).toBe(true);
  });

  it('an openssl EC server and an openssl RSA client complete mutual TLS 1.3 with our options', async () => {
    // Both CAs are roots of one trust domain (root rotation): one bundle with both authorities.
    const bundle = X509Bundle.fromPem(TD, read('ec-ca.pem') + read('rsa-ca.pem'));
    const serverSvid = X509Svid.parse(read('ec-leaf.pem'), read('ec-leaf.key'));
    const clientSvid = X509Svid.parse(read('rsa-leaf.pem'), read('rsa-leaf.pkcs1'));
    const server = tracker.server(
      tls.createServer(tlsServerOptions({ svidSource: serverSvid, bundleSource: bundle })),
    );
    enforceServerPeers(server, { bundleSource: bundle, authorizer: authorizeId(clientSvid.id) });
    const seen: string[] = [];
    server.on('secureConnection', (s: tls.TLSSocket) => {
      seen.push(peerIdentity(s).toString());
      answerPings(s);
    });
    const port = await listen(server);
    const opts = tlsClientOptions({
      svidSource: clientSvid,
      bundleSource: bundle,
      authorizer: authorizeId(serverSvid.id),
    });
    const ex = await exchange(tracker.socket(tls.connect({ ...opts, host: '127.0.0.1', port })));
    expect(ex).toMatchObject({ secure: true, data: 'pong' });
    expect(seen).toEqual([`spiffe://${TD}/ns/default/sa/rsa`]);
  });

  it('enforces URI and DNS name constraints of a CA shared by two trust domains', () => {
    // One key for two trust domains (what the Trust Domain and Bundle standard, 6.4, warns about),
    // made safe by name constraints: the CA may only issue example.org IDs.
    makeCa(
      'nc',
      ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      [`nameConstraints=critical,permitted;URI:${TD},excluded;DNS:bad.${TD}`],
    );
    makeCa(
      'nc-ip',
      ['ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
      ['nameConstraints=critical,permitted;IP:10.0.0.0/255.0.0.0'],
    );
    openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'nc.key');
    signLeaf('nc-ok', 'nc', 'nc.key', `spiffe://${TD}/ns/default/sa/ok`, `good.${TD}`);
    signLeaf('nc-evil', 'nc', 'nc.key', 'spiffe://evil.org/ns/default/sa/x');
    signLeaf('nc-dns', 'nc', 'nc.key', `spiffe://${TD}/ns/default/sa/dns`, `bad.${TD}`);
    signLeaf('nc-ip-leaf', 'nc-ip', 'nc.key', `spiffe://${TD}/ns/default/sa/ip`);
    const ca = read('nc-ca.pem');
    const bundles = new BundleSet([X509Bundle.fromPem(TD, ca), X509Bundle.fromPem('evil.org', ca)]);
    const verify = (leaf: string) =>
      verifyX509Svid(X509Svid.parse(read(leaf), read('nc.key')).chainDer(), bundles);
    expect(verify('nc-ok.pem').id.toString()).toBe(`spiffe://${TD}/ns/default/sa/ok`);
    expect(() => verify('nc-evil.pem')).toThrow(
      /name constraints do not permit leaf name "spiffe:\/\/evil.org/,
    );
    expect(() => verify('nc-dns.pem')).toThrow(/name constraints exclude leaf name "bad.example.org"/);
    const ipBundle = X509Bundle.fromPem(TD, read('nc-ip-ca.pem'));
    expect(() =>
      verifyX509Svid(X509Svid.parse(read('nc-ip-leaf.pem'), read('nc.key')).chainDer(), ipBundle),
    ).toThrow(/name constraint form this verifier does not support/);
    // OpenSSL agrees on the URI constraint.
    expect(() =>
      execFileSync(OPENSSL, ['verify', '-CAfile', 'nc-ca.pem', 'nc-evil.pem'], { cwd: dir, stdio: 'pipe' }),
    ).toThrow(/name constraint|permitted subtree/i);
    execFileSync(OPENSSL, ['verify', '-CAfile', 'nc-ca.pem', 'nc-ok.pem'], { cwd: dir, stdio: 'pipe' });
  });
});
