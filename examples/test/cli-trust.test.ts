/**
 * Where the command's trust comes from: certificates made by openssl (an EC P-256 CA with a
 * URI SAN, leaves signed with `-extfile`) used by `serve` and `connect`, `hbone ca issue` from
 * that openssl CA, a SPIFFE bundle JSON as `--bundle`, and two trust domains joined with
 * `--federate` (never merged: the wrong domain's bundle does not do).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Bundle } from '@hbone/spiffe';
import { afterEach, describe, expect, it } from 'vitest';
import { certArgs, killAll, makePki, OPENSSL, runHbone, serve, sha256, tempDir } from './cli-harness.js';

afterEach(killAll);

const TD = 'example.org';
const SERVER_ID = `spiffe://${TD}/ns/default/sa/server`;
const CLIENT_ID = `spiffe://${TD}/ns/default/sa/client`;

function openssl(dir: string, ...args: string[]): void {
  execFileSync(OPENSSL, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** An EC P-256 CA as an operator makes it by hand: `ca.pem` + `ca-key.pem`, URI SAN spiffe://TD. */
function opensslCa(dir: string): void {
  openssl(
    dir,
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    'ca-key.pem',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    `/O=${TD}/CN=openssl test CA`,
    '-addext',
    `subjectAltName=URI:spiffe://${TD}`,
    '-addext',
    'basicConstraints=critical,CA:true',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
}

/** A leaf for `id` (SEC1 key from `ecparam`), signed by the CA with an `-extfile`. */
function opensslLeaf(dir: string, name: string, id: string): { cert: string; key: string } {
  writeFileSync(
    join(dir, `${name}.ext`),
    [
      `subjectAltName=critical,URI:${id}`,
      'basicConstraints=critical,CA:false',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth,clientAuth',
      '',
    ].join('\n'),
  );
  openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}-key.pem`);
  openssl(dir, 'req', '-new', '-key', `${name}-key.pem`, '-subj', '/O=SPIFFE', '-out', `${name}.csr`);
  openssl(
    dir,
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca-key.pem',
    '-CAcreateserial',
    '-days',
    '1',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  );
  return { cert: join(dir, `${name}.pem`), key: join(dir, `${name}-key.pem`) };
}

describe.skipIf(!existsSync(OPENSSL))('certificates from openssl', { timeout: 120_000 }, () => {
  it('serve and connect with an openssl CA and leaves; ca issue from the same CA; a SPIFFE bundle JSON', async () => {
    const dir = tempDir();
    opensslCa(dir);
    const server = opensslLeaf(dir, 'server', SERVER_ID);
    expect(readFileSync(server.key, 'utf8')).toContain('BEGIN EC PRIVATE KEY');
    // The client's SVID: issued by `hbone ca issue` from the openssl CA directory.
    const issue = await runHbone([
      'ca',
      'issue',
      '--ca',
      dir,
      '--id',
      CLIENT_ID,
      '--out',
      join(dir, 'client'),
    ]);
    expect(issue.stderr).toBe('');
    expect(issue.code).toBe(0);
    const client = { cert: join(dir, 'client', 'cert.pem'), key: join(dir, 'client', 'key.pem') };

    // The server trusts the openssl ca.pem as PEM; the client gets it as SPIFFE bundle JSON.
    const jwks = join(dir, 'bundle.json');
    writeFileSync(jwks, X509Bundle.fromPem(TD, readFileSync(join(dir, 'ca.pem'))).toJwks());

    const inspect = JSON.parse(
      (await runHbone(['inspect', server.cert, '--json', '--bundle', jwks])).stdoutText,
    );
    expect(inspect).toMatchObject({ kind: 'svid', spiffeId: SERVER_ID, svidCheck: { ok: true } });
    expect(inspect.verification).toMatchObject({ ok: true });
    expect(inspect.certificates[0].keyType).toBe('EC P-256');

    const srv = await serve([
      ...certArgs(server),
      '--bundle',
      join(dir, 'ca.pem'),
      '--echo',
      '--allow',
      CLIENT_ID,
    ]);
    expect(srv.cli.stderr).toContain(`as ${SERVER_ID}`);
    const input = Buffer.from('bytes through an openssl-made identity\n'.repeat(1000));
    const r = await runHbone(
      [
        'connect',
        '--to',
        srv.address,
        '--authority',
        '127.0.0.1:7',
        ...certArgs(client),
        '--bundle',
        jwks,
        '--expect',
        SERVER_ID,
      ],
      { stdin: input },
    );
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(sha256(r.stdout)).toBe(sha256(input));
    const [line] = (await srv.cli.until(
      () => (srv.cli.stdoutText.includes('\n') ? srv.cli.jsonLines() : undefined),
      'the log line',
    )) as Array<{ peer: string; status: number }>;
    expect(line).toMatchObject({ peer: CLIENT_ID, status: 200 });
  });

  it('a leaf from an openssl CA the peer does not trust is refused, with a positive control', async () => {
    const good = tempDir();
    const rogue = tempDir();
    opensslCa(good);
    opensslCa(rogue); // same trust domain name, other keys
    const server = opensslLeaf(good, 'server', SERVER_ID);
    const client = opensslLeaf(good, 'client', CLIENT_ID);
    const impostor = opensslLeaf(rogue, 'client', CLIENT_ID);
    const srv = await serve([...certArgs(server), '--bundle', join(good, 'ca.pem'), '--echo']);
    const args = (who: { cert: string; key: string }, bundle: string) => [
      'connect',
      '--to',
      srv.address,
      '--authority',
      '127.0.0.1:7',
      ...certArgs(who),
      '--bundle',
      bundle,
      '--expect',
      SERVER_ID,
    ];
    const [ok, bad] = await Promise.all([
      runHbone(args(client, join(good, 'ca.pem')), { stdin: 'ping' }),
      runHbone(args(impostor, join(rogue, 'ca.pem')), { stdin: 'ping' }),
    ]);
    expect(ok.code).toBe(0);
    expect(ok.stdoutText).toBe('ping');
    // The impostor trusts its own CA, so it rejects the real server: ERR_HBONE_TLS on its side.
    expect(bad.code).not.toBe(0);
    // (The text is OpenSSL's, e.g. "self-signed certificate in certificate chain": node's own
    // chain check against the union of our bundles runs before the SPIFFE verifier.)
    expect(bad.stderr).toMatch(/^hbone connect: ERR_HBONE_TLS: /);
    expect(bad.stderr.trimEnd().split('\n')).toHaveLength(1);
  });
});

describe('two trust domains with --federate', { timeout: 120_000 }, () => {
  it('a client of another trust domain reaches the server once each side federates the other', async () => {
    const dir = tempDir();
    const SERVER_A = 'spiffe://a.example/ns/default/sa/server';
    const CLIENT_B = 'spiffe://b.example/ns/default/sa/client';
    const [a, b] = await Promise.all([
      makePki(
        join(dir, 'a'),
        { server: SERVER_A, client: 'spiffe://a.example/ns/default/sa/unused' },
        'a.example',
      ),
      makePki(
        join(dir, 'b'),
        { server: 'spiffe://b.example/ns/default/sa/unused', client: CLIENT_B },
        'b.example',
      ),
    ]);
    const srv = await serve([
      ...certArgs(a.files.server!),
      '--bundle',
      a.bundle,
      '--federate',
      `b.example=${b.bundle}`,
      '--allow-trust-domain',
      'b.example',
      '--echo',
    ]);
    const connect = (federate: string[]) =>
      runHbone(
        [
          'connect',
          '--to',
          srv.address,
          '--authority',
          '127.0.0.1:7',
          ...certArgs(b.files.client!),
          '--bundle',
          b.bundle,
          ...federate,
          '--expect',
          SERVER_A,
        ],
        { stdin: 'across domains' },
      );
    const [ok, noFederation, wrongBundle] = await Promise.all([
      connect(['--federate', `a.example=${a.bundle}`]),
      connect([]),
      // Bundles are per trust domain: b's own bundle offered as a.example's does not verify a.
      connect(['--federate', `a.example=${b.bundle}`]),
    ]);
    expect(ok.stderr).toBe('');
    expect(ok.code).toBe(0);
    expect(ok.stdoutText).toBe('across domains');
    expect(noFederation.code).not.toBe(0);
    expect(noFederation.stderr).toMatch(/^hbone connect: ERR_HBONE_TLS: /);
    expect(wrongBundle.code).not.toBe(0);
    expect(wrongBundle.stderr).toMatch(/^hbone connect: ERR_HBONE_TLS: /);

    const [line] = (await srv.cli.until(
      () => (srv.cli.stdoutText.includes('\n') ? srv.cli.jsonLines() : undefined),
      'the log line',
    )) as Array<{ peer: string }>;
    expect(line!.peer).toBe(CLIENT_B);
  });

  it('--federate for our own trust domain, or twice for one domain, is a usage error', async () => {
    const dir = tempDir();
    const p = await makePki(dir, { server: SERVER_ID, client: CLIENT_ID });
    const base = [
      'serve',
      '--listen',
      '127.0.0.1:0',
      ...certArgs(p.files.server!),
      '--bundle',
      p.bundle,
      '--echo',
    ];
    const [own, twice] = await Promise.all([
      runHbone([...base, '--federate', `${TD}=${p.bundle}`]),
      runHbone([...base, '--federate', `x.org=${p.bundle}`, '--federate', `x.org=${p.bundle}`]),
    ]);
    expect(own.code).toBe(2);
    expect(own.stderr).toMatch(/ERR_USAGE: --federate .*our own trust domain; give its bundle with --bundle/);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(/ERR_USAGE: --federate: two bundles for trust domain "x\.org"/);
  });
});
