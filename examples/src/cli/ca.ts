/**
 * `hbone ca init` and `hbone ca issue`: a small file-based SPIFFE CA for trying HBONE out (the
 * testkit's CA, written to PEM files), able to issue from a CA made with openssl as well.
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseCertificate, SpiffeId, TrustDomain, verifyX509Svid, X509Bundle, X509Svid } from '@hbone/spiffe';
import {
  BUNDLE_FILE,
  CA_FILE,
  CA_KEY_FILE,
  CERT_FILE,
  KEY_FILE,
  KEY_TYPES,
  type KeyType,
  TestCa,
  writeSvidFiles,
} from '@hbone/testkit';
import {
  CliError,
  type CommandSpec,
  type ParsedArgs,
  parseDurationMs,
  required,
  UsageError,
} from './args.js';
import { errorCode, errorMessage } from './output.js';

const KEY_TYPE_HELP = `key type: ${KEY_TYPES.join(', ')}; default ec-p256`;

export const caInitSpec: CommandSpec = {
  name: 'ca init',
  summary:
    'Create a SPIFFE certificate authority for one trust domain: a self-signed root (cA, keyCertSign, URI SAN spiffe://TD)\nwritten as ca.pem, ca-key.pem (mode 0600) and bundle.pem (the trust bundle to give to peers).',
  flags: {
    'trust-domain': {
      type: 'string',
      required: true,
      value: 'TD',
      help: 'the trust domain, e.g. example.org',
    },
    out: {
      type: 'string',
      required: true,
      value: 'DIR',
      help: 'directory to write into (created if missing)',
    },
    intermediate: {
      type: 'boolean',
      help: 'also create an intermediate CA (intermediate.pem, intermediate-key.pem) that signs the leaves',
    },
    'key-type': { type: 'string', value: 'TYPE', help: KEY_TYPE_HELP },
    force: { type: 'boolean', help: 'overwrite an existing CA in DIR' },
  },
  details: 'Example:\n  pnpm hbone ca init --trust-domain example.org --out ca',
};

export const caIssueSpec: CommandSpec = {
  name: 'ca issue',
  summary:
    "Issue an X509-SVID for a SPIFFE ID: cert.pem (leaf, then any intermediate) and key.pem (PKCS#8, mode 0600).\nThe CA directory holds ca.pem and ca-key.pem, made by `hbone ca init` or by openssl (EC P-256/P-384 or RSA;\nthe CA needs cA=true and keyCertSign; its URI SAN, if any, must name the ID's trust domain).",
  flags: {
    ca: { type: 'string', required: true, value: 'DIR', help: 'the CA directory (ca.pem, ca-key.pem)' },
    id: {
      type: 'string',
      required: true,
      value: 'SPIFFE_ID',
      help: 'e.g. spiffe://example.org/ns/default/sa/web',
    },
    out: {
      type: 'string',
      required: true,
      value: 'DIR',
      help: 'directory to write cert.pem and key.pem into',
    },
    ttl: { type: 'string', value: 'DURATION', help: 'lifetime, e.g. 1h, 24h (default 24h, as Istio)' },
    'key-type': { type: 'string', value: 'TYPE', help: KEY_TYPE_HELP },
    force: { type: 'boolean', help: 'overwrite existing cert.pem / key.pem in DIR' },
  },
  details:
    'Example:\n  pnpm hbone ca issue --ca ca --id spiffe://example.org/ns/default/sa/web --out web\nThe issued chain is verified against ca.pem before anything is written.',
};

function keyTypeOf(args: ParsedArgs): KeyType {
  const v = args.strings.get('key-type') ?? 'ec-p256';
  if (!(KEY_TYPES as readonly string[]).includes(v)) {
    throw new UsageError(`--key-type: expected one of ${KEY_TYPES.join(', ')}, got ${v}`);
  }
  return v as KeyType;
}

function refuseOverwrite(dir: string, files: readonly string[], force: boolean): void {
  if (force) return;
  const present = files.filter((f) => existsSync(join(dir, f)));
  if (present.length > 0) {
    throw new CliError(
      'ERR_FILE_EXISTS',
      `${join(dir, present[0]!)} already exists; pass --force to overwrite`,
    );
  }
}

export interface CaInitResult {
  trustDomain: string;
  dir: string;
  caPath: string;
  caKeyPath: string;
  bundlePath: string;
  intermediatePath?: string;
}

/** `ca init` as a function (the demo uses it too). */
export async function initCa(opts: {
  trustDomain: string;
  out: string;
  intermediate?: boolean;
  keyType?: KeyType;
  force?: boolean;
}): Promise<CaInitResult> {
  let td: TrustDomain;
  try {
    td = TrustDomain.parse(opts.trustDomain);
  } catch (err) {
    throw new CliError(errorCode(err), `--trust-domain ${opts.trustDomain}: ${errorMessage(err)}`);
  }
  const dir = resolve(opts.out);
  refuseOverwrite(dir, [CA_FILE, CA_KEY_FILE, BUNDLE_FILE], opts.force ?? false);
  const ca = await TestCa.create(td.name, {
    intermediate: opts.intermediate ?? false,
    keyType: opts.keyType ?? 'ec-p256',
  });
  const paths = await ca.writeFiles(dir);
  return {
    trustDomain: td.name,
    dir,
    caPath: paths.caPath,
    caKeyPath: paths.caKeyPath,
    bundlePath: paths.bundlePath,
    ...(paths.intermediatePath ? { intermediatePath: paths.intermediatePath } : {}),
  };
}

export interface IssueResult {
  id: string;
  certPath: string;
  keyPath: string;
  notAfter: Date;
  intermediates: number;
  keyType: string;
}

/** `ca issue` as a function (the demo uses it too). */
export async function issueSvid(opts: {
  ca: string;
  id: string;
  out: string;
  ttlMs?: number;
  keyType?: KeyType;
  force?: boolean;
}): Promise<IssueResult> {
  let id: SpiffeId;
  try {
    id = SpiffeId.parse(opts.id);
  } catch (err) {
    throw new CliError(errorCode(err), `--id ${opts.id}: ${errorMessage(err)}`);
  }
  if (id.path === '') {
    throw new CliError('ERR_SPIFFE_ID_INVALID', `--id ${opts.id}: an X509-SVID needs an ID with a path`);
  }
  const caDir = resolve(opts.ca);
  let rootPem: string;
  try {
    rootPem = await readFile(join(caDir, CA_FILE), 'utf8');
  } catch (err) {
    throw new CliError(errorCode(err), `--ca ${opts.ca}: cannot read ${CA_FILE}: ${errorMessage(err)}`);
  }
  // The root's trust bundle: what every peer will verify the new SVID against.
  let bundle: X509Bundle;
  try {
    bundle = X509Bundle.fromPem(id.trustDomain, rootPem);
  } catch (err) {
    throw new CliError(errorCode(err), `--ca ${opts.ca}: ${CA_FILE}: ${errorMessage(err)}`);
  }
  const root = bundle.authorities[0]!;
  const caDomains = root.uris
    .filter((u) => u.startsWith('spiffe://'))
    .map((u) => u.slice('spiffe://'.length).split('/')[0]);
  if (caDomains.length > 0 && !caDomains.includes(id.trustDomain.name)) {
    throw new CliError(
      'ERR_TRUST_DOMAIN_MISMATCH',
      `--id ${id}: the CA in ${opts.ca} is for trust domain "${caDomains[0]}", not "${id.trustDomain.name}"`,
    );
  }
  let ca: TestCa;
  try {
    ca = await TestCa.load(caDir, { trustDomain: id.trustDomain.name });
  } catch (err) {
    throw new CliError(
      typeof (err as { code?: unknown }).code === 'string' ? errorCode(err) : 'ERR_CA_INVALID',
      `--ca ${opts.ca}: ${errorMessage(err)}`,
    );
  }
  const ttlMs = opts.ttlMs ?? 24 * 3_600_000;
  if (ttlMs < 60_000) throw new UsageError('--ttl must be at least 1m');
  const notAfter = new Date(Date.now() + ttlMs);
  const issuers = [ca.intermediate?.der, ca.root.der].filter((d): d is Uint8Array => d !== undefined);
  for (const der of issuers) {
    const c = parseCertificate(der);
    if (c.notAfter.getTime() < notAfter.getTime()) {
      throw new UsageError(
        `--ttl: the SVID would outlive its CA certificate (valid until ${c.notAfter.toISOString()})`,
      );
    }
  }
  const minted = await ca.mint(id.toString(), { ttlMs, keyType: opts.keyType ?? 'ec-p256' });
  // Check the result as a peer will, before anything is written: an openssl CA without
  // keyCertSign, say, fails here rather than in every handshake later.
  try {
    const svid = X509Svid.parse(minted.certChainPem, minted.keyPem);
    verifyX509Svid(svid.chainDer(), bundle);
  } catch (err) {
    throw new CliError(
      errorCode(err),
      `the CA in ${opts.ca} issued an SVID that does not verify against its own ${CA_FILE}: ${errorMessage(err)}`,
    );
  }
  const out = resolve(opts.out);
  refuseOverwrite(out, [CERT_FILE, KEY_FILE], opts.force ?? false);
  await mkdir(out, { recursive: true });
  const paths = await writeSvidFiles(minted, out);
  return {
    id: id.toString(),
    certPath: paths.certPath,
    keyPath: paths.keyPath,
    notAfter: minted.notAfter,
    intermediates: minted.chainDer.length - 1,
    keyType: opts.keyType ?? 'ec-p256',
  };
}

export async function runCaInit(args: ParsedArgs): Promise<number> {
  const r = await initCa({
    trustDomain: required(args, 'trust-domain'),
    out: required(args, 'out'),
    intermediate: args.switches.has('intermediate'),
    keyType: keyTypeOf(args),
    force: args.switches.has('force'),
  });
  const lines = [
    `created a CA for trust domain ${r.trustDomain} in ${r.dir}:`,
    `  ${r.caPath}  root certificate`,
    `  ${r.caKeyPath}  root private key (keep it secret)`,
    `  ${r.bundlePath}  trust bundle: give it to peers as --bundle`,
  ];
  if (r.intermediatePath) lines.push(`  ${r.intermediatePath}  intermediate CA (signs the leaves)`);
  process.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

export async function runCaIssue(args: ParsedArgs): Promise<number> {
  const ttl = args.strings.get('ttl');
  const r = await issueSvid({
    ca: required(args, 'ca'),
    id: required(args, 'id'),
    out: required(args, 'out'),
    ...(ttl !== undefined ? { ttlMs: parseDurationMs('ttl', ttl) } : {}),
    keyType: keyTypeOf(args),
    force: args.switches.has('force'),
  });
  process.stdout.write(
    [
      `issued ${r.id} (${r.keyType}, valid until ${r.notAfter.toISOString()}):`,
      `  ${r.certPath}  leaf${r.intermediates > 0 ? ` + ${r.intermediates} intermediate(s)` : ''}`,
      `  ${r.keyPath}  private key`,
      '',
    ].join('\n'),
  );
  return 0;
}
