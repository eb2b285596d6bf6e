/**
 * `hbone ca init`, `hbone ca issue` and `hbone inspect`, run as the real command; plus the
 * argument rules every command shares (help, unknown flags, missing values, exit codes).
 */
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { verifyX509Svid, X509Bundle, X509Svid } from '@hbone/spiffe';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, runHbone, tempDir } from './cli-harness.js';

afterEach(killAll);

// Each run of the command starts node + tsx (about a second of CPU): give the tests room.
const SLOW = { timeout: 120_000 };

const ID = 'spiffe://example.org/ns/default/sa/web';

describe('hbone ca', SLOW, () => {
  it('init writes ca.pem, ca-key.pem (0600) and bundle.pem; issue writes a chain and key that verify', async () => {
    const dir = tempDir();
    const ca = join(dir, 'ca');
    const init = await runHbone(['ca', 'init', '--trust-domain', 'example.org', '--out', ca]);
    expect(init.stderr).toBe('');
    expect(init.code).toBe(0);
    expect(init.stdoutText).toContain('example.org');
    expect(statSync(join(ca, 'ca-key.pem')).mode & 0o777).toBe(0o600);

    const out = join(dir, 'web');
    const issue = await runHbone(['ca', 'issue', '--ca', ca, '--id', ID, '--out', out, '--ttl', '2h']);
    expect(issue.stderr).toBe('');
    expect(issue.code).toBe(0);
    const svid = X509Svid.parse(readFileSync(join(out, 'cert.pem')), readFileSync(join(out, 'key.pem')));
    expect(svid.id.toString()).toBe(ID);
    const lifetime = svid.leaf.notAfter.getTime() - Date.now();
    expect(lifetime).toBeGreaterThan(110 * 60_000);
    expect(lifetime).toBeLessThanOrEqual(2 * 3_600_000);
    const bundle = X509Bundle.fromPem('example.org', readFileSync(join(ca, 'bundle.pem')));
    expect(verifyX509Svid(svid.chainDer(), bundle).id.toString()).toBe(ID);
  });

  it('an intermediate CA: the issued cert.pem carries leaf + intermediate and verifies against the root', async () => {
    const dir = tempDir();
    const ca = join(dir, 'ca');
    expect(
      (await runHbone(['ca', 'init', '--trust-domain', 'example.org', '--out', ca, '--intermediate'])).code,
    ).toBe(0);
    const issue = await runHbone(['ca', 'issue', '--ca', ca, '--id', ID, '--out', join(dir, 'w')]);
    expect(issue.code).toBe(0);
    expect(issue.stdoutText).toContain('1 intermediate');
    const svid = X509Svid.parse(
      readFileSync(join(dir, 'w', 'cert.pem')),
      readFileSync(join(dir, 'w', 'key.pem')),
    );
    expect(svid.intermediates).toHaveLength(1);
    const bundle = X509Bundle.fromPem('example.org', readFileSync(join(ca, 'bundle.pem')));
    expect(verifyX509Svid(svid.chainDer(), bundle).verifiedChain).toHaveLength(3);
  });

  it('refuses an ID of another trust domain, an ID without a path, a bad trust domain, and overwriting', async () => {
    const dir = tempDir();
    const ca = join(dir, 'ca');
    expect((await runHbone(['ca', 'init', '--trust-domain', 'example.org', '--out', ca])).code).toBe(0);
    const other = await runHbone([
      'ca',
      'issue',
      '--ca',
      ca,
      '--id',
      'spiffe://other.org/x',
      '--out',
      join(dir, 'x'),
    ]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(/^hbone ca issue: ERR_TRUST_DOMAIN_MISMATCH: .*other\.org/);
    const root = await runHbone([
      'ca',
      'issue',
      '--ca',
      ca,
      '--id',
      'spiffe://example.org',
      '--out',
      join(dir, 'x'),
    ]);
    expect(root.stderr).toMatch(/^hbone ca issue: ERR_SPIFFE_ID_INVALID: /);
    const badTd = await runHbone(['ca', 'init', '--trust-domain', 'Example.ORG', '--out', join(dir, 'ca2')]);
    expect(badTd.code).toBe(1);
    expect(badTd.stderr).toMatch(/^hbone ca init: ERR_TRUST_DOMAIN_INVALID: /);
    const again = await runHbone(['ca', 'init', '--trust-domain', 'example.org', '--out', ca]);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^hbone ca init: ERR_FILE_EXISTS: .*--force/);
    const missing = await runHbone([
      'ca',
      'issue',
      '--ca',
      join(dir, 'nope'),
      '--id',
      ID,
      '--out',
      join(dir, 'x'),
    ]);
    expect(missing.stderr).toMatch(/^hbone ca issue: ENOENT: /);
    // Each failure is exactly one line.
    for (const r of [other, root, badTd, again, missing])
      expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('hbone inspect', SLOW, () => {
  it('describes an SVID chain with its key, a PEM bundle and a SPIFFE bundle JSON, as text and JSON', async () => {
    const dir = tempDir();
    const ca = join(dir, 'ca');
    expect(
      (await runHbone(['ca', 'init', '--trust-domain', 'example.org', '--out', ca, '--intermediate'])).code,
    ).toBe(0);
    expect((await runHbone(['ca', 'issue', '--ca', ca, '--id', ID, '--out', join(dir, 'w')])).code).toBe(0);
    const cert = join(dir, 'w', 'cert.pem');

    const text = await runHbone(['inspect', cert, '--bundle', join(ca, 'bundle.pem')]);
    expect(text.code).toBe(0);
    expect(text.stdoutText).toContain(`SPIFFE ID:     ${ID}`);
    expect(text.stdoutText).toContain('X509-SVID leaf rules: ok');
    expect(text.stdoutText).toContain('certificate 2 in this file (signature verified)');
    expect(text.stdoutText).toMatch(/verified against .*bundle\.pem: ok/);

    const json = await runHbone(['inspect', cert, '--json']);
    expect(json.code).toBe(0);
    const r = JSON.parse(json.stdoutText);
    expect(r).toMatchObject({ kind: 'svid', format: 'pem', spiffeId: ID, trustDomain: 'example.org' });
    expect(r.certificates).toHaveLength(2);
    expect(r.certificates[0]).toMatchObject({
      role: 'leaf',
      spiffeId: ID,
      isCa: false,
      issuedBy: 1,
      status: 'valid',
    });
    expect(r.certificates[0].keyType).toBe('EC P-256');
    expect(r.certificates[0].keyUsage).toEqual(['digitalSignature']);
    expect(r.certificates[1]).toMatchObject({
      role: 'intermediate',
      isCa: true,
      spiffeId: 'spiffe://example.org',
    });
    expect(Date.parse(r.certificates[0].notAfter)).toBeGreaterThan(Date.now());

    // A combined cert + key file: the key is described and matched to the leaf.
    const combined = join(dir, 'combined.pem');
    writeFileSync(combined, readFileSync(cert, 'utf8') + readFileSync(join(dir, 'w', 'key.pem'), 'utf8'));
    const withKey = JSON.parse((await runHbone(['inspect', combined, '--json'])).stdoutText);
    expect(withKey.privateKey).toEqual({ type: 'ec-p256', matchesLeaf: true });

    const pemBundle = JSON.parse((await runHbone(['inspect', join(ca, 'bundle.pem'), '--json'])).stdoutText);
    expect(pemBundle).toMatchObject({ kind: 'bundle', trustDomain: 'example.org' });
    expect(pemBundle.certificates[0]).toMatchObject({ role: 'ca', selfSigned: true, isCa: true });

    const jwks = join(dir, 'bundle.json');
    const bundle = X509Bundle.fromPem('example.org', readFileSync(join(ca, 'bundle.pem'))).with({
      sequence: 42n,
      refreshHintSeconds: 300,
    });
    writeFileSync(jwks, bundle.toJwks({ indent: 2 }));
    const j = await runHbone(['inspect', jwks]);
    expect(j.code).toBe(0);
    expect(j.stdoutText).toContain('trust bundle (1 authority), SPIFFE-BUNDLE-JSON');
    expect(j.stdoutText).toContain('sequence:      42');
    const jj = JSON.parse((await runHbone(['inspect', jwks, '--json'])).stdoutText);
    expect(jj).toMatchObject({ format: 'spiffe-bundle-json', kind: 'bundle', trustDomain: 'example.org' });
    expect(jj.bundle).toEqual({ sequence: '42', refreshHintSeconds: 300 });
  });

  it('a chain that does not verify against the given bundle: exit 1 with the verifier code', async () => {
    const dir = tempDir();
    for (const name of ['a', 'b']) {
      expect(
        (await runHbone(['ca', 'init', '--trust-domain', 'example.org', '--out', join(dir, name)])).code,
      ).toBe(0);
    }
    expect(
      (await runHbone(['ca', 'issue', '--ca', join(dir, 'a'), '--id', ID, '--out', join(dir, 'w')])).code,
    ).toBe(0);
    const r = await runHbone([
      'inspect',
      join(dir, 'w', 'cert.pem'),
      '--bundle',
      join(dir, 'b', 'bundle.pem'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stdoutText).toMatch(/FAILED: ERR_CHAIN_UNTRUSTED/);
  });

  it('garbage is a typed error, not a crash', async () => {
    const dir = tempDir();
    const f = join(dir, 'junk.pem');
    writeFileSync(f, '-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n');
    const r = await runHbone(['inspect', f]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^hbone inspect: ERR_PEM_INVALID: /);
  });
});

describe('arguments', SLOW, () => {
  it('--help documents every command; unknown commands and options are usage errors (exit 2)', async () => {
    const top = await runHbone(['--help']);
    expect(top.code).toBe(0);
    for (const c of ['ca init', 'ca issue', 'serve', 'connect', 'load', 'inspect'])
      expect(top.stdoutText).toContain(c);
    const commands = [['ca', 'init'], ['ca', 'issue'], ['serve'], ['connect'], ['load'], ['inspect']];
    const helps = await Promise.all(commands.map((c) => runHbone([...c, '--help'])));
    helps.forEach((h, i) => {
      expect(h.code).toBe(0);
      expect(h.stdoutText).toMatch(new RegExp(`^usage: hbone ${commands[i]!.join(' ')}`));
    });
    const [typo, unknown, missing, noValue, twice] = await Promise.all([
      runHbone(['serve', '--lisen', '127.0.0.1:0']),
      runHbone(['frobnicate']),
      runHbone(['ca', 'init', '--out', '/tmp/x']),
      runHbone(['ca', 'init', '--trust-domain', '--out', '/tmp/x']),
      runHbone(['ca', 'init', '--trust-domain=a.org', '--trust-domain=b.org', '--out', '/tmp/x']),
    ]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(
      /^hbone serve: ERR_USAGE: unknown option --lisen \(did you mean --listen\?\)/,
    );
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/ERR_USAGE: unknown command "frobnicate"/);
    expect(missing.stderr).toMatch(/ERR_USAGE: --trust-domain is required/);
    expect(noValue.stderr).toMatch(/ERR_USAGE: --trust-domain needs a value/);
    expect(twice.stderr).toMatch(/ERR_USAGE: --trust-domain given twice/);
  });
});
