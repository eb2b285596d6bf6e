/**
 * Test helpers that ask OpenSSL, an implementation independent of ours and of node's X509 wrapper,
 * what a certificate says.
 */
import { execFileSync, spawnSync } from 'node:child_process';

export const OPENSSL = '/usr/bin/openssl';

export interface OpensslExtension {
  critical: boolean;
  /** Value lines, trimmed and joined with '\n'. */
  value: string;
}

export interface OpensslCertText {
  text: string;
  subject: string;
  issuer: string;
  signatureAlgorithm: string;
  /** Keyed by OpenSSL's display name, e.g. 'X509v3 Basic Constraints', or the dotted OID if unknown. */
  extensions: Map<string, OpensslExtension>;
}

/** `openssl x509 -inform DER -noout -text`, parsed into subject, issuer and extensions. */
export function opensslText(der: Uint8Array): OpensslCertText {
  const text = execFileSync(OPENSSL, ['x509', '-inform', 'DER', '-noout', '-text'], {
    input: der,
  }).toString();
  const field = (name: string) => text.match(new RegExp(`^ {8}${name}:(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const extensions = new Map<string, OpensslExtension>();
  const lines = text.split('\n');
  let current: { name: string; ext: OpensslExtension } | undefined;
  let inExtensions = false;
  for (const line of lines) {
    if (/^ {8}X509v3 extensions:/.test(line)) {
      inExtensions = true;
      continue;
    }
    if (!inExtensions) continue;
    if (/^ {0,8}\S/.test(line)) break; // 'Signature Algorithm' closes the extension block
    const header = line.match(/^ {12}(\S.*?):( critical)?\s*$/);
    if (header?.[1]) {
      current = { name: header[1], ext: { critical: header[2] !== undefined, value: '' } };
      extensions.set(current.name, current.ext);
    } else if (current && line.trim()) {
      current.ext.value = current.ext.value ? `${current.ext.value}\n${line.trim()}` : line.trim();
    }
  }
  return {
    text,
    subject: field('Subject'),
    issuer: field('Issuer'),
    signatureAlgorithm: field('Signature Algorithm'),
    extensions,
  };
}

/** `openssl verify -CAfile ca -untrusted chain leaf`: ok, or OpenSSL's error line. */
export function opensslVerify(
  caFile: string,
  leafFile: string,
  untrustedFile?: string,
): { ok: boolean; output: string } {
  const args = [
    'verify',
    '-CAfile',
    caFile,
    ...(untrustedFile ? ['-untrusted', untrustedFile] : []),
    leafFile,
  ];
  const r = spawnSync(OPENSSL, args);
  return { ok: r.status === 0, output: `${r.stdout.toString()}${r.stderr.toString()}` };
}

export function openssl(args: string[], opts: { cwd?: string } = {}): string {
  return execFileSync(OPENSSL, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}
