import { X509Certificate } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  certificatesToPem,
  DNS_SAN_NAME,
  type MintedSvid,
  SVID_DEFECTS,
  type SvidDefect,
  TestCa,
  UNKNOWN_CRITICAL_EXTENSION_OID,
} from '../src/index.js';
import { opensslText, opensslVerify } from './openssl.js';

const ID = 'spiffe://example.org/ns/default/sa/foo';
const KNOWN_EXTENSIONS = new Set([
  'X509v3 Basic Constraints',
  'X509v3 Key Usage',
  'X509v3 Extended Key Usage',
  'X509v3 Subject Alternative Name',
  'X509v3 Authority Key Identifier',
]);

/**
 * Everything a verifier could object to, read with OpenSSL (extensions, names) and node's X509
 * (signatures, validity): a defect switch must change exactly the features it names.
 */
interface Features {
  basicConstraints: string | undefined;
  keyUsage: string | undefined;
  extendedKeyUsage: string | undefined;
  san: string | undefined;
  sanCritical: boolean | undefined;
  subject: string;
  otherExtensions: string[];
  validity: 'current' | 'expired' | 'not-yet-valid';
  chainLength: number;
  /** Each certificate's signature verifies with the next one's key, the last with the root's. */
  signaturesChainToRoot: boolean;
  /** basicConstraints cA of each intermediate in the chain. */
  intermediatesAreCa: boolean[];
}

function features(ca: TestCa, svid: MintedSvid): Features {
  const t = opensslText(svid.leafDer);
  const ext = (name: string) => t.extensions.get(name);
  const bc = ext('X509v3 Basic Constraints');
  const ku = ext('X509v3 Key Usage');
  const san = ext('X509v3 Subject Alternative Name');
  const leaf = new X509Certificate(svid.leafDer);
  const now = Date.now();
  const certs = [...svid.chainDer, ca.root.der].map((d) => new X509Certificate(d));
  return {
    basicConstraints: bc && `${bc.critical ? 'critical ' : ''}${bc.value}`,
    keyUsage: ku && `${ku.critical ? 'critical ' : ''}${ku.value}`,
    extendedKeyUsage: ext('X509v3 Extended Key Usage')?.value,
    san: san?.value,
    sanCritical: san?.critical,
    subject: t.subject,
    otherExtensions: [...t.extensions]
      .filter(([name]) => !KNOWN_EXTENSIONS.has(name))
      .map(([name, e]) => `${name}${e.critical ? ' critical' : ''}`),
    validity:
      new Date(leaf.validTo).getTime() < now
        ? 'expired'
        : new Date(leaf.validFrom).getTime() > now
          ? 'not-yet-valid'
          : 'current',
    chainLength: svid.chainDer.length,
    signaturesChainToRoot: certs.slice(0, -1).every((c, i) => {
      const issuer = certs[i + 1];
      return issuer !== undefined && c.verify(issuer.publicKey);
    }),
    intermediatesAreCa: certs.slice(1, -1).map((c) => c.ca),
  };
}

function baseline(chainLength: number): Features {
  return {
    basicConstraints: 'critical CA:FALSE',
    keyUsage: 'critical Digital Signature',
    extendedKeyUsage: 'TLS Web Server Authentication, TLS Web Client Authentication',
    san: `URI:${ID}`,
    sanCritical: false,
    subject: 'O = SPIFFE',
    otherExtensions: [],
    validity: 'current',
    chainLength,
    signaturesChainToRoot: true,
    intermediatesAreCa: Array.from({ length: chainLength - 1 }, () => true),
  };
}

/** What each switch changes from the baseline, and nothing else. */
function expectedDelta(defect: SvidDefect, withIntermediate: boolean): Partial<Features> {
  const chainLength = withIntermediate ? 2 : 1;
  switch (defect) {
    case 'expired':
      return { validity: 'expired' };
    case 'not-yet-valid':
      return { validity: 'not-yet-valid' };
    case 'wrong-ca':
      return { signaturesChainToRoot: false };
    case 'leaf-ca':
      return { basicConstraints: 'critical CA:TRUE' };
    case 'key-cert-sign':
      return { keyUsage: 'critical Digital Signature, Certificate Sign' };
    case 'crl-sign':
      return { keyUsage: 'critical Digital Signature, CRL Sign' };
    case 'two-uri-sans':
      return { san: `URI:${ID}, URI:spiffe://example.org/testkit/second-uri` };
    case 'no-uri-san':
      return { san: undefined, sanCritical: undefined };
    case 'non-spiffe-uri':
      return { san: 'URI:https://example.org/ns/default/sa/foo' };
    case 'no-path':
      return { san: 'URI:spiffe://example.org' };
    case 'dns-san':
      return { san: `URI:${ID}, DNS:${DNS_SAN_NAME}` };
    case 'empty-subject-critical-san':
      return { subject: '', sanCritical: true };
    case 'unknown-critical-extension':
      return { otherExtensions: [`${UNKNOWN_CRITICAL_EXTENSION_OID} critical`] };
    case 'intermediate-not-ca':
      return { intermediatesAreCa: [false] };
    case 'path-len-exceeded':
      return {
        chainLength: chainLength + 1,
        intermediatesAreCa: Array.from({ length: chainLength }, () => true),
      };
  }
}

/** What OpenSSL's own chain check says: it knows RFC 5280, not the SPIFFE leaf rules. */
const OPENSSL_REJECTS: Partial<Record<SvidDefect, RegExp>> = {
  expired: /certificate has expired/,
  'not-yet-valid': /certificate is not yet valid/,
  'wrong-ca': /unable to get local issuer certificate|certificate signature failure/,
  'unknown-critical-extension': /unhandled critical extension/,
  'intermediate-not-ca': /invalid CA certificate|key usage does not include certificate signing/,
  'path-len-exceeded': /path length constraint exceeded/,
};

async function opensslVerdict(ca: TestCa, svid: MintedSvid, dir: string, name: string) {
  const caFile = join(dir, 'ca.pem');
  const leafFile = join(dir, `${name}-leaf.pem`);
  const chainFile = join(dir, `${name}-chain.pem`);
  await writeFile(caFile, ca.bundlePem);
  await writeFile(leafFile, certificatesToPem([svid.leafDer]));
  const untrusted = svid.chainDer.slice(1);
  if (untrusted.length > 0) await writeFile(chainFile, certificatesToPem(untrusted));
  return opensslVerify(caFile, leafFile, untrusted.length > 0 ? chainFile : undefined);
}

describe.each([
  { withIntermediate: true, label: 'root + intermediate' },
  { withIntermediate: false, label: 'root only' },
])('defect switches ($label)', ({ withIntermediate }) => {
  let ca: TestCa;
  let dir: string;
  beforeAll(async () => {
    ca = await TestCa.create('example.org', { intermediate: withIntermediate });
    dir = await mkdtemp(join(tmpdir(), 'testkit-defects-'));
  });

  it('a leaf without switches has exactly the baseline features and passes openssl verify', async () => {
    const svid = await ca.mint(ID);
    expect(features(ca, svid)).toEqual(baseline(withIntermediate ? 2 : 1));
    const verdict = await opensslVerdict(ca, svid, dir, 'valid');
    expect(verdict.output).toMatch(/: OK/);
    expect(verdict.ok).toBe(true);
  });

  for (const info of SVID_DEFECTS) {
    if (!withIntermediate && info.requiresIntermediate) {
      it(`'${info.defect}' refuses a CA without intermediate`, async () => {
        await expect(ca.mint(ID, { defects: [info.defect] })).rejects.toThrow(/intermediate: true/);
      });
      continue;
    }
    it(`'${info.defect}' changes exactly its own feature`, async () => {
      const svid = await ca.mint(ID, { defects: [info.defect] });
      const expected = {
        ...baseline(withIntermediate ? 2 : 1),
        ...expectedDelta(info.defect, withIntermediate),
      };
      expect(features(ca, svid)).toEqual(expected);
      expect(svid.id).toBe(ID);

      const verdict = await opensslVerdict(ca, svid, dir, info.defect);
      const rejects = OPENSSL_REJECTS[info.defect];
      if (rejects) {
        expect(verdict.ok, verdict.output).toBe(false);
        expect(verdict.output).toMatch(rejects);
      } else {
        // Defects OpenSSL cannot see (SPIFFE leaf rules) leave an RFC 5280-valid chain: only a
        // SPIFFE-aware verifier can catch them, which is the point of the switch.
        expect(verdict.output).toMatch(/: OK/);
      }
    });
  }
});

describe('SVID_DEFECTS', () => {
  it('lists every switch once, and only the positive cases are valid per the standard', () => {
    const defects = SVID_DEFECTS.map((d) => d.defect);
    expect(new Set(defects).size).toBe(defects.length);
    expect(defects).toHaveLength(15);
    expect(SVID_DEFECTS.filter((d) => d.valid).map((d) => d.defect)).toEqual([
      'dns-san',
      'empty-subject-critical-san',
    ]);
    for (const d of SVID_DEFECTS) {
      expect(d.description.length).toBeGreaterThan(20);
      expect(d.rule).toMatch(/RFC 5280|X509-SVID/);
    }
  });
});

describe('the impostor CA behind wrong-ca', () => {
  it('is created once, lazily, with the same trust domain and subject names but other keys', async () => {
    const ca = await TestCa.create('example.org', { intermediate: true });
    expect(ca.impostor).toBeUndefined();
    const minted = await Promise.all(
      Array.from({ length: 20 }, () => ca.mint(ID, { defects: ['wrong-ca'] })),
    );
    const impostor = ca.impostor;
    if (!impostor) throw new Error('no impostor after a wrong-ca mint');
    expect(await ca.getImpostor()).toBe(impostor);
    expect(impostor.trustDomain).toBe(ca.trustDomain);
    const [real, fake] = [ca.root.der, impostor.root.der].map((d) => new X509Certificate(d));
    expect(fake?.subject).toBe(real?.subject);
    expect(Buffer.from(impostor.root.der).equals(Buffer.from(ca.root.der))).toBe(false);
    const impostorIntermediate = impostor.intermediate?.der;
    if (!impostorIntermediate) throw new Error('impostor has no intermediate');
    for (const svid of minted) {
      expect(Buffer.from(svid.chainDer[1] ?? []).equals(Buffer.from(impostorIntermediate))).toBe(true);
      const leaf = new X509Certificate(svid.leafDer);
      expect(leaf.verify(new X509Certificate(impostorIntermediate).publicKey)).toBe(true);
    }
  });
});

describe('combining switches', () => {
  let ca: TestCa;
  beforeAll(async () => {
    ca = await TestCa.create('example.org', { intermediate: true });
  });

  it('applies independent switches together', async () => {
    const svid = await ca.mint(ID, { defects: ['expired', 'two-uri-sans', 'leaf-ca'] });
    const f = features(ca, svid);
    expect(f.validity).toBe('expired');
    expect(f.san).toBe(`URI:${ID}, URI:spiffe://example.org/testkit/second-uri`);
    expect(f.basicConstraints).toBe('critical CA:TRUE');
  });

  it("'no-uri-san' with 'dns-san' leaves a SAN with only the DNS name", async () => {
    const svid = await ca.mint(ID, { defects: ['no-uri-san', 'dns-san'] });
    expect(features(ca, svid).san).toBe(`DNS:${DNS_SAN_NAME}`);
  });

  it.each([
    [['expired', 'not-yet-valid']],
    [['no-path', 'non-spiffe-uri']],
    [['two-uri-sans', 'no-uri-san']],
    [['wrong-ca', 'path-len-exceeded']],
    [['wrong-ca', 'intermediate-not-ca']],
    [['no-uri-san', 'empty-subject-critical-san']],
  ] as SvidDefect[][][])('refuses %j, which set the same property two ways', async (defects) => {
    await expect(ca.mint(ID, { defects })).rejects.toThrow(TypeError);
  });

  it('refuses an unknown switch and dates that a validity switch would override', async () => {
    await expect(ca.mint(ID, { defects: ['nope' as SvidDefect] })).rejects.toThrow(/unknown SVID defect/);
    await expect(ca.mint(ID, { defects: ['expired'], ttlMs: 1000 })).rejects.toThrow(/drop notBefore/);
  });
});
