/**
 * `hbone inspect FILE`: what a certificate, chain or bundle file holds, for a person (default) or
 * a script (`--json`): per certificate its SPIFFE ID, validity, issuer (and whether that issuer is
 * in the file and its signature checks out), CA flags, key usage and key type; for a chain, the
 * X509-SVID leaf rules; for a key in the same file, whether it matches the leaf; with `--bundle`,
 * a full SPIFFE verification of the chain.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  decodePem,
  encodePem,
  KeyUsage,
  leafSvidId,
  type ParsedCertificate,
  parseCertificate,
  parsePrivateKey,
  privateKeyType,
  TrustDomain,
  verifyX509Svid,
  X509Bundle,
} from '@hbone/spiffe';
import { CliError, type CommandSpec, type ParsedArgs } from './args.js';
import { readFlagFile } from './credentials.js';
import { errorCode, errorMessage } from './output.js';

export const inspectSpec: CommandSpec = {
  name: 'inspect',
  summary:
    'Show what a certificate, certificate chain (SVID) or trust bundle (PEM, DER, or SPIFFE bundle JSON) holds:\nSPIFFE IDs, validity, issuer chain, CA flags, key usage and key types.',
  positionals: ['FILE'],
  flags: {
    json: { type: 'boolean', help: 'print one JSON object instead of text' },
    bundle: {
      type: 'string',
      value: 'FILE',
      help: 'also verify the chain in FILE as an X509-SVID against this bundle (PEM or JSON)',
    },
    'trust-domain': {
      type: 'string',
      value: 'TD',
      help: "the trust domain of a SPIFFE bundle JSON file (default: from its CAs' URI SAN)",
    },
  },
  details: 'Examples:\n  pnpm hbone inspect web/cert.pem\n  pnpm hbone inspect ca/bundle.pem --json',
};

const KEY_USAGE_NAMES = Object.entries(KeyUsage) as Array<[string, number]>;

export interface CertificateReport {
  index: number;
  role: 'leaf' | 'intermediate' | 'ca' | 'certificate';
  spiffeId: string | null;
  uris: string[];
  dnsNames: string[];
  subject: string;
  issuer: string;
  /** Index of the certificate in this file that signed this one, or null. */
  issuedBy: number | null;
  selfSigned: boolean;
  serialNumber: string;
  notBefore: string;
  notAfter: string;
  status: 'valid' | 'expired' | 'not yet valid';
  /** Seconds until notAfter (negative once expired). */
  expiresInSeconds: number;
  isCa: boolean;
  pathLen: number | null;
  keyUsage: string[];
  keyType: string;
  fingerprintSha256: string;
}

export interface InspectReport {
  file: string;
  format: 'pem' | 'der' | 'spiffe-bundle-json';
  kind: 'svid' | 'bundle' | 'certificates' | 'key';
  trustDomain: string | null;
  spiffeId: string | null;
  certificates: CertificateReport[];
  /** The X509-SVID leaf rules (svid kind only). */
  svidCheck: { ok: boolean; code?: string; message?: string } | null;
  privateKey: { type: string; matchesLeaf: boolean | null } | null;
  bundle: { sequence: string | null; refreshHintSeconds: number | null } | null;
  verification: { ok: boolean; bundle: string; code?: string; message?: string; chain?: string[] } | null;
}

/** `EC P-256`, `RSA 2048`, `Ed25519`... */
export function describeKey(key: KeyObject): string {
  const d = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curves: Record<string, string> = { prime256v1: 'P-256', secp384r1: 'P-384', secp521r1: 'P-521' };
      const c = String(d?.namedCurve);
      return `EC ${curves[c] ?? c}`;
    }
    case 'rsa':
      return `RSA ${d?.modulusLength ?? '?'}`;
    case 'rsa-pss':
      return `RSA-PSS ${d?.modulusLength ?? '?'}`;
    case 'ed25519':
      return 'Ed25519';
    default:
      return String(key.asymmetricKeyType);
  }
}

function spiffeUri(c: ParsedCertificate): string | null {
  return c.uris.find((u) => u.startsWith('spiffe://')) ?? null;
}

function trustDomainOf(uri: string | null): string | null {
  return uri === null ? null : (uri.slice('spiffe://'.length).split('/')[0] ?? null);
}

function describeCert(
  c: ParsedCertificate,
  index: number,
  all: ParsedCertificate[],
  kind: string,
  now: Date,
): CertificateReport {
  const selfSigned = c.selfIssued && c.isSignedBy(c);
  let issuedBy: number | null = null;
  all.forEach((other, j) => {
    if (issuedBy === null && j !== index && c.namedIssuer(other) && c.isSignedBy(other)) issuedBy = j;
  });
  if (selfSigned) issuedBy = index;
  const t = now.getTime();
  const status = t < c.notBefore.getTime() ? 'not yet valid' : t > c.notAfter.getTime() ? 'expired' : 'valid';
  let role: CertificateReport['role'] = 'certificate';
  if (kind === 'bundle') role = 'ca';
  else if (kind === 'svid') role = index === 0 ? 'leaf' : 'intermediate';
  return {
    index,
    role,
    spiffeId: spiffeUri(c),
    uris: [...c.uris],
    dnsNames: [...c.dnsNames],
    subject: c.subject,
    issuer: c.issuer,
    issuedBy,
    selfSigned,
    serialNumber: c.serialNumber,
    notBefore: c.notBefore.toISOString(),
    notAfter: c.notAfter.toISOString(),
    status,
    expiresInSeconds: Math.round((c.notAfter.getTime() - t) / 1000),
    isCa: c.isCa,
    pathLen: c.pathLen ?? null,
    keyUsage: KEY_USAGE_NAMES.filter(([, bit]) => c.hasKeyUsage(bit)).map(([name]) => name),
    keyType: describeKey(c.publicKey),
    fingerprintSha256: c.fingerprint256,
  };
}

function parseCerts(ders: Uint8Array[], file: string): ParsedCertificate[] {
  return ders.map((d, i) => {
    try {
      return parseCertificate(d);
    } catch (err) {
      throw new CliError(errorCode(err), `${file}: certificate ${i + 1}: ${errorMessage(err)}`);
    }
  });
}

/** Reads and describes FILE. `now` is for tests. */
export function inspectFile(
  file: string,
  opts: { bundle?: string; trustDomain?: string; now?: Date } = {},
): InspectReport {
  const now = opts.now ?? new Date();
  const data = readFlagFile('file', file);
  const head = data.subarray(0, 256).toString('latin1').trimStart();
  let format: InspectReport['format'];
  let certs: ParsedCertificate[];
  let keys: KeyObject[] = [];
  let jsonBundle: X509Bundle | undefined;
  if (head.startsWith('{')) {
    format = 'spiffe-bundle-json';
    // The JSON does not name its trust domain: take it from the flag, else parse under a
    // placeholder and read it from the authorities' URI SAN below.
    const td = opts.trustDomain ?? 'unknown.invalid';
    try {
      jsonBundle = X509Bundle.fromJwks(TrustDomain.parse(td), data);
    } catch (err) {
      throw new CliError(errorCode(err), `${file}: ${errorMessage(err)}`);
    }
    certs = [...jsonBundle.authorities];
  } else if (head.includes('-----BEGIN ')) {
    format = 'pem';
    let blocks: ReturnType<typeof decodePem>;
    try {
      blocks = decodePem(data);
    } catch (err) {
      throw new CliError(errorCode(err), `${file}: ${errorMessage(err)}`);
    }
    certs = parseCerts(
      blocks.filter((b) => b.label === 'CERTIFICATE').map((b) => b.der),
      file,
    );
    keys = blocks
      .filter((b) => b.label.endsWith('PRIVATE KEY'))
      .map((b) => {
        try {
          return parsePrivateKey(encodePem(b.label, b.der));
        } catch (err) {
          throw new CliError(errorCode(err), `${file}: ${b.label}: ${errorMessage(err)}`);
        }
      });
    if (certs.length === 0 && keys.length === 0) {
      throw new CliError('ERR_PEM_INVALID', `${file}: no CERTIFICATE or PRIVATE KEY block found`);
    }
  } else {
    format = 'der';
    certs = parseCerts([new Uint8Array(data)], file);
  }

  const kind: InspectReport['kind'] =
    certs.length === 0
      ? 'key'
      : jsonBundle !== undefined || (certs.length > 0 && certs.every((c) => c.isCa))
        ? 'bundle'
        : certs[0] && !certs[0].isCa
          ? 'svid'
          : 'certificates';
  const reports = certs.map((c, i) => describeCert(c, i, certs, kind, now));
  const uri = reports.map((r) => r.spiffeId).find((u) => u !== null) ?? null;
  const trustDomain = opts.trustDomain ?? trustDomainOf(uri);

  let svidCheck: InspectReport['svidCheck'] = null;
  if (kind === 'svid') {
    try {
      leafSvidId(certs[0]!);
      svidCheck = { ok: true };
    } catch (err) {
      svidCheck = { ok: false, code: errorCode(err), message: errorMessage(err) };
    }
  }
  let privateKey: InspectReport['privateKey'] = null;
  const key = keys[0];
  if (key) {
    let type: string;
    try {
      type = privateKeyType(key);
    } catch {
      type = describeKey(key);
    }
    privateKey = {
      type,
      matchesLeaf: certs[0] === undefined ? null : certs[0].publicKey.equals(createPublicKey(key)),
    };
  }

  let verification: InspectReport['verification'] = null;
  if (opts.bundle !== undefined) {
    const bundleFile = opts.bundle;
    const leafTd = trustDomainOf(certs[0] ? spiffeUri(certs[0]) : null);
    try {
      if (certs.length === 0) throw new CliError('ERR_SVID_INVALID', `${file} holds no certificate`);
      const bytes = readFlagFile('bundle', bundleFile);
      const bundle = X509Bundle.parse(TrustDomain.parse(leafTd ?? trustDomain ?? 'unknown.invalid'), bytes);
      const v = verifyX509Svid(
        certs.map((c) => c.der),
        bundle,
        { now },
      );
      verification = {
        ok: true,
        bundle: bundleFile,
        chain: v.verifiedChain.map((c) => c.subject || '(empty subject)'),
      };
    } catch (err) {
      verification = { ok: false, bundle: bundleFile, code: errorCode(err), message: errorMessage(err) };
    }
  }

  return {
    file,
    format,
    kind,
    trustDomain,
    spiffeId: kind === 'svid' ? (reports[0]?.spiffeId ?? null) : null,
    certificates: reports,
    svidCheck,
    privateKey,
    bundle: jsonBundle
      ? {
          sequence: jsonBundle.sequence === undefined ? null : jsonBundle.sequence.toString(),
          refreshHintSeconds: jsonBundle.refreshHintSeconds ?? null,
        }
      : null,
    verification,
  };
}

function duration(seconds: number): string {
  const s = Math.abs(seconds);
  const text =
    s >= 86_400 * 2
      ? `${Math.floor(s / 86_400)} days`
      : s >= 3_600
        ? `${Math.floor(s / 3_600)}h${String(Math.floor((s % 3_600) / 60)).padStart(2, '0')}m`
        : `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return text;
}

/** The report as text for a person. */
export function formatReport(r: InspectReport): string {
  const kindText = {
    svid: `X509-SVID chain (${r.certificates.length} certificate${r.certificates.length === 1 ? '' : 's'})`,
    bundle: `trust bundle (${r.certificates.length} authorit${r.certificates.length === 1 ? 'y' : 'ies'})`,
    certificates: `${r.certificates.length} certificate(s)`,
    key: 'private key',
  }[r.kind];
  const lines = [`${r.file}: ${kindText}, ${r.format.toUpperCase()}`];
  if (r.spiffeId) lines.push(`  SPIFFE ID:     ${r.spiffeId}`);
  if (r.trustDomain) lines.push(`  trust domain:  ${r.trustDomain}`);
  if (r.bundle) {
    lines.push(`  sequence:      ${r.bundle.sequence ?? '(none)'}`);
    lines.push(
      `  refresh hint:  ${r.bundle.refreshHintSeconds === null ? '(none)' : `${r.bundle.refreshHintSeconds} s`}`,
    );
  }
  for (const c of r.certificates) {
    lines.push('', `certificate ${c.index + 1} (${c.role})`);
    const row = (k: string, v: string): void => {
      lines.push(`  ${k.padEnd(13)}${v}`);
    };
    row('SPIFFE ID:', c.spiffeId ?? '(none)');
    if (c.uris.length > (c.spiffeId ? 1 : 0)) row('URI SANs:', c.uris.join(', '));
    if (c.dnsNames.length > 0) row('DNS SANs:', c.dnsNames.join(', '));
    row('subject:', c.subject || '(empty)');
    const by = c.selfSigned
      ? 'self-signed'
      : c.issuedBy !== null
        ? `certificate ${c.issuedBy + 1} in this file (signature verified)`
        : 'not in this file';
    row('issuer:', `${c.issuer || '(empty)'} [${by}]`);
    const rel =
      c.status === 'valid'
        ? `expires in ${duration(c.expiresInSeconds)}`
        : c.status === 'expired'
          ? `expired ${duration(c.expiresInSeconds)} ago`
          : 'not yet valid';
    row('validity:', `${c.notBefore} .. ${c.notAfter} (${c.status}; ${rel})`);
    row('CA:', c.isCa ? `yes${c.pathLen !== null ? `, pathLen ${c.pathLen}` : ''}` : 'no');
    row('key usage:', c.keyUsage.length > 0 ? c.keyUsage.join(', ') : '(none)');
    row('key:', c.keyType);
    row('serial:', c.serialNumber);
    row('sha256:', c.fingerprintSha256);
  }
  if (r.certificates.length > 1 && r.kind === 'svid') {
    const chain = r.certificates.map((c) => `${c.index + 1}`).join(' -> ');
    const linked = r.certificates.slice(0, -1).every((c) => c.issuedBy === c.index + 1);
    lines.push('', `chain: ${chain} ${linked ? '(each signed by the next)' : '(NOT in issuing order)'}`);
  }
  if (r.svidCheck) {
    lines.push(
      '',
      r.svidCheck.ok
        ? 'X509-SVID leaf rules: ok'
        : `X509-SVID leaf rules: FAILED: ${r.svidCheck.code}: ${r.svidCheck.message}`,
    );
  }
  if (r.privateKey) {
    const match =
      r.privateKey.matchesLeaf === null
        ? ''
        : r.privateKey.matchesLeaf
          ? ', matches certificate 1'
          : ', does NOT match certificate 1';
    lines.push(`private key: ${r.privateKey.type}${match}`);
  }
  if (r.verification) {
    lines.push(
      r.verification.ok
        ? `verified against ${r.verification.bundle}: ok (${(r.verification.chain ?? []).join(' -> ')})`
        : `verified against ${r.verification.bundle}: FAILED: ${r.verification.code}: ${r.verification.message}`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export async function runInspect(args: ParsedArgs): Promise<number> {
  const file = args.positionals[0]!;
  const bundle = args.strings.get('bundle');
  const td = args.strings.get('trust-domain');
  const report = inspectFile(file, {
    ...(bundle !== undefined ? { bundle } : {}),
    ...(td !== undefined ? { trustDomain: td } : {}),
  });
  process.stdout.write(
    args.switches.has('json') ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report),
  );
  // Asked to verify, a failed verification is a failed command.
  return report.verification && !report.verification.ok ? 1 : 0;
}
