/**
 * An in-memory SPIFFE certificate authority for one trust domain: a self-signed root and an
 * optional intermediate, minting X509-SVIDs (valid ones, or ones with chosen defects) in well under
 * a millisecond each, so tests can mint hundreds.
 */
import { EMPTY_NAME_DER, signCertificate, truncateToSeconds } from './certificate.js';
import { subjectNameDer } from './der.js';
import {
  authorityKeyIdentifier,
  basicConstraints,
  KeyUsage,
  keyIdentifier,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
} from './extensions.js';
import { generateKeyMaterial, type KeyMaterial, type KeyType, keyMaterialFromPem } from './key-type.js';
import { leafProfile } from './leaf-profile.js';
import type { CaCertificate, MintedSvid, MintOptions } from './minted-svid.js';
import { certificatesToPem, derToPem } from './pem.js';
import { type CaFilePaths, readCaFiles, writeCaFiles } from './pem-files.js';
import { checkDefectCombination, SVID_DEFECTS, type SvidDefect } from './svid-defects.js';
import { x509 } from './x509.js';

const DAY = 86_400_000;

export interface TestCaOptions {
  /** Add an intermediate (pathLen 0) between root and leaves; leaf chains then carry it. */
  intermediate?: boolean;
  /** Key type of the root and intermediate; default 'ec-p256'. Leaves choose their own. */
  keyType?: KeyType;
  /** A fixed clock: CA validity and every mint default to it instead of the current time. */
  now?: Date;
}

export interface LoadCaOptions {
  /** Required when the root carries no `spiffe://<td>` URI SAN to take it from. */
  trustDomain?: string;
  now?: Date;
}

/** A certificate that signs, with what signing again needs already parsed and encoded. */
interface Signer {
  readonly der: Uint8Array;
  /** Its subject as encoded: the issuer field of what it signs. */
  readonly nameDer: Uint8Array;
  /** Holds the parsed private key: signing with it costs no import or parse. */
  readonly material: KeyMaterial;
  /** The authorityKeyIdentifier extension for what it signs (RFC 5280 4.2.1.1). */
  readonly aki: Uint8Array;
  readonly pathLength: number | undefined;
}

export class TestCa {
  readonly trustDomain: string;
  /** Key type of the root (and intermediate). */
  readonly keyType: KeyType;
  readonly root: CaCertificate;
  readonly intermediate: CaCertificate | undefined;
  /** The fixed clock given at creation, if any. */
  readonly now: Date | undefined;

  readonly #root: Signer;
  readonly #intermediate: Signer | undefined;
  // Helpers for defect switches, built on first use. Promises, so concurrent mints build each once.
  #impostor: Promise<TestCa> | undefined;
  #impostorValue: TestCa | undefined;
  #notCaIntermediate: Promise<Signer> | undefined;
  #subCa: Promise<Signer> | undefined;

  private constructor(
    trustDomain: string,
    root: Signer,
    intermediate: Signer | undefined,
    now: Date | undefined,
  ) {
    this.trustDomain = trustDomain;
    this.keyType = root.material.keyType;
    this.now = now;
    this.#root = root;
    this.#intermediate = intermediate;
    this.root = caCertificate(root);
    this.intermediate = intermediate && caCertificate(intermediate);
  }

  /**
   * Creates a root (and optionally an intermediate) for `trustDomain`. The name is not validated:
   * a test may want a CA for a malformed trust domain.
   */
  static async create(trustDomain: string, opts: TestCaOptions = {}): Promise<TestCa> {
    const keyType = opts.keyType ?? 'ec-p256';
    const now = opts.now ?? new Date();
    // pathLen counts the CA certificates allowed below (RFC 5280 4.2.1.9). Keeping it tight (1 with an
    // intermediate, 0 without) is what lets 'path-len-exceeded' break it with one extra CA.
    const root = issueCa({
      trustDomain,
      commonName: 'hbone testkit root CA',
      material: await generateKeyMaterial(keyType),
      issuer: undefined,
      pathLength: opts.intermediate ? 1 : 0,
      now,
    });
    const intermediate = opts.intermediate
      ? issueCa({
          trustDomain,
          commonName: 'hbone testkit intermediate CA',
          material: await generateKeyMaterial(keyType),
          issuer: root,
          pathLength: 0,
          now,
        })
      : undefined;
    return new TestCa(trustDomain, root, intermediate, opts.now);
  }

  /**
   * Reloads a CA from `ca.pem` + `ca-key.pem` in `dir` (and `intermediate.pem` +
   * `intermediate-key.pem` when both are present), as written by `writeFiles` or by OpenSSL, e.g.
   * `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -noenc -keyout ca-key.pem -out ca.pem
   * -subj /O=example -addext basicConstraints=critical,CA:true -addext keyUsage=critical,keyCertSign`.
   * Keys may be PKCS#8, SEC1 or PKCS#1 PEM; EC P-256, EC P-384 or RSA-2048.
   */
  static async load(dir: string, opts: LoadCaOptions = {}): Promise<TestCa> {
    const files = await readCaFiles(dir);
    const root = loadSigner(files.rootPem, files.rootKeyPem, 'ca.pem');
    const intermediate =
      files.intermediatePem !== undefined && files.intermediateKeyPem !== undefined
        ? loadSigner(files.intermediatePem, files.intermediateKeyPem, 'intermediate.pem')
        : undefined;
    const trustDomain = opts.trustDomain ?? trustDomainOf(root.der);
    if (trustDomain === undefined) {
      throw new TypeError(`${dir}/ca.pem has no spiffe://<trust domain> URI SAN: pass opts.trustDomain`);
    }
    return new TestCa(trustDomain, root, intermediate, opts.now);
  }

  /** The trust bundle: the root only (X509-SVID 6.1: bundles hold CA certificates, ideally self-signed). */
  get bundlePem(): string {
    return this.root.pem;
  }

  /** Intermediates, leaf excluded (and root excluded); '' without intermediate. */
  get chainPem(): string {
    return this.intermediate?.pem ?? '';
  }

  /** The CA behind 'wrong-ca', once a mint has used it (or `getImpostor()` was awaited). */
  get impostor(): TestCa | undefined {
    return this.#impostorValue;
  }

  /**
   * A CA with the same trust domain, key type, shape and subject names, but its own keys: what an
   * attacker who picked the same trust domain name would run (SPIFFE-ID 2.1.1, name collisions).
   * Built once and cached. (For a CA from `load`, the names are testkit's, not the loaded root's.)
   */
  getImpostor(): Promise<TestCa> {
    this.#impostor ??= TestCa.create(this.trustDomain, {
      intermediate: this.#intermediate !== undefined,
      keyType: this.keyType,
      ...(this.now ? { now: this.now } : {}),
    }).then((ca) => {
      this.#impostorValue = ca;
      return ca;
    });
    return this.#impostor;
  }

  /** Mints a leaf X509-SVID for `spiffeId` (not validated: malformed IDs are a test input too). */
  async mint(spiffeId: string, opts: MintOptions = {}): Promise<MintedSvid> {
    const defects = opts.defects ?? [];
    checkDefectCombination(defects);
    const keyType = opts.keyType ?? 'ec-p256';
    const path = await this.#signingPath(defects);
    const issuer = path[0];
    if (!issuer) throw new Error('unreachable: empty signing path');
    const profile = leafProfile({
      id: spiffeId,
      caTrustDomain: this.trustDomain,
      keyType,
      defects,
      now: opts.now ?? this.now ?? new Date(),
      options: opts,
      authorityKeyIdentifier: issuer.aki,
    });
    const material = await generateKeyMaterial(keyType);
    const leafDer = signCertificate({
      issuerNameDer: issuer.nameDer,
      subjectNameDer: profile.subjectNameDer,
      notBefore: profile.notBefore,
      notAfter: profile.notAfter,
      spkiDer: material.spkiDer,
      extensions: profile.extensions,
      signer: issuer.material,
    });
    // The root never travels in a chain (RFC 8446 4.4.2 lets it be omitted; ztunnel omits it).
    const chainDer = [leafDer, ...path.slice(0, -1).map((s) => s.der)];
    const minted: MintedSvid = {
      id: spiffeId,
      leafDer,
      chainDer,
      certChainPem: certificatesToPem(chainDer),
      keyPem: derToPem(material.pkcs8Der, 'PRIVATE KEY'),
      keyDer: material.pkcs8Der,
      notBefore: truncateToSeconds(profile.notBefore),
      notAfter: truncateToSeconds(profile.notAfter),
    };
    if (keyType !== 'rsa-2048') {
      minted.keyPemSec1 = material.privateKey.export({ type: 'sec1', format: 'pem' }).toString();
    }
    return minted;
  }

  /** Writes `ca.pem`, `ca-key.pem`, `bundle.pem` (and the intermediate's files, if any) into `dir`. */
  writeFiles(dir: string): Promise<CaFilePaths> {
    return writeCaFiles(dir, {
      rootPem: this.root.pem,
      rootKeyPem: this.root.privateKeyPem,
      bundlePem: this.bundlePem,
      ...(this.intermediate
        ? { intermediatePem: this.intermediate.pem, intermediateKeyPem: this.intermediate.privateKeyPem }
        : {}),
    });
  }

  /** The signers from the leaf's issuer up to the root (the last element). */
  async #signingPath(defects: readonly SvidDefect[]): Promise<Signer[]> {
    if (defects.includes('wrong-ca')) return (await this.getImpostor()).#normalPath();
    if (defects.includes('intermediate-not-ca')) {
      if (!this.#intermediate) throw new TypeError(needsIntermediate('intermediate-not-ca'));
      this.#notCaIntermediate ??= this.#issueNotCaIntermediate();
      return [await this.#notCaIntermediate, this.#root];
    }
    if (defects.includes('path-len-exceeded')) {
      const top = this.#intermediate ?? this.#root;
      if (top.pathLength !== 0) {
        throw new TypeError(
          "'path-len-exceeded' needs a CA whose signing certificate has pathLenConstraint 0",
        );
      }
      this.#subCa ??= this.#issueSubCa(top);
      return [await this.#subCa, ...this.#normalPath()];
    }
    return this.#normalPath();
  }

  #normalPath(): Signer[] {
    return this.#intermediate ? [this.#intermediate, this.#root] : [this.#root];
  }

  /**
   * Takes the CA intermediate's place under the root, but with cA=false and no keyCertSign: RFC 5280
   * 6.1.4 (k) rejects the path. Same key type and names otherwise.
   */
  async #issueNotCaIntermediate(): Promise<Signer> {
    return issueCa({
      trustDomain: this.trustDomain,
      commonName: 'hbone testkit intermediate (not a CA)',
      material: await generateKeyMaterial(this.keyType),
      issuer: this.#root,
      pathLength: undefined,
      now: this.now ?? new Date(),
      notCa: true,
    });
  }

  /** A well-formed CA certificate one level below a pathLen-0 signer: its existence is the defect. */
  async #issueSubCa(parent: Signer): Promise<Signer> {
    return issueCa({
      trustDomain: this.trustDomain,
      commonName: 'hbone testkit sub-CA (exceeds path length)',
      material: await generateKeyMaterial(this.keyType),
      issuer: parent,
      pathLength: undefined,
      now: this.now ?? new Date(),
    });
  }
}

function needsIntermediate(defect: SvidDefect): string {
  const info = SVID_DEFECTS.find((d) => d.defect === defect);
  return `'${defect}' needs a CA created with { intermediate: true } (${info?.rule ?? ''})`;
}

function caCertificate(s: Signer): CaCertificate {
  return {
    der: s.der,
    pem: derToPem(s.der, 'CERTIFICATE'),
    privateKeyPem: derToPem(s.material.pkcs8Der, 'PRIVATE KEY'),
  };
}

interface IssueCaParams {
  trustDomain: string;
  commonName: string;
  material: KeyMaterial;
  /** undefined: self-signed. */
  issuer: Signer | undefined;
  pathLength: number | undefined;
  now: Date;
  /** For 'intermediate-not-ca': cA=false, digitalSignature only. */
  notCa?: boolean;
}

/**
 * X509-SVID 3.2/4.1/4.3: signing certificates have cA=true and keyCertSign (cRLSign allowed), and
 * SHOULD be SVIDs whose SPIFFE ID has no path, so the URI SAN is `spiffe://<td>`.
 *
 * Validity starts a week back so that 'expired' leaves (issued 25 hours back) still fall inside their
 * issuer's validity: the leaf's own dates must be the only thing wrong with them.
 */
function issueCa(p: IssueCaParams): Signer {
  const nameDer = caSubject(p.trustDomain, p.commonName);
  const keyId = keyIdentifier(p.material.spkiDer);
  const extensions = [
    basicConstraints(!p.notCa, p.pathLength),
    keyUsage(p.notCa ? KeyUsage.digitalSignature : KeyUsage.keyCertSign | KeyUsage.cRLSign),
    subjectKeyIdentifier(keyId),
    ...(p.issuer ? [p.issuer.aki] : []),
    ...(p.trustDomain ? [subjectAltName([{ type: 'uri', value: `spiffe://${p.trustDomain}` }], false)] : []),
  ];
  const der = signCertificate({
    issuerNameDer: p.issuer?.nameDer ?? nameDer,
    subjectNameDer: nameDer,
    notBefore: new Date(p.now.getTime() - 7 * DAY),
    notAfter: new Date(p.now.getTime() + 3650 * DAY),
    spkiDer: p.material.spkiDer,
    extensions,
    signer: p.issuer?.material ?? p.material,
  });
  return { der, nameDer, material: p.material, aki: authorityKeyIdentifier(keyId), pathLength: p.pathLength };
}

/**
 * Subject names depend only on the trust domain and role, so the impostor CA has the same names as
 * the real one: a verifier that matches issuers by name alone is fooled, as it should be shown to be.
 * OU holds the trust domain cut to ub-organizational-unit-name (64, RFC 5280 appendix A.1).
 */
function caSubject(trustDomain: string, commonName: string): Uint8Array {
  const name: x509.JsonName = [{ O: ['SPIFFE'] }];
  if (trustDomain) name.push({ OU: [trustDomain.slice(0, 64)] });
  name.push({ CN: [commonName] });
  const der = new Uint8Array(new x509.Name(name).toArrayBuffer());
  return der.byteLength > 0 ? der : EMPTY_NAME_DER;
}

function loadSigner(certPem: string, keyPem: string, file: string): Signer {
  const cert = new x509.X509Certificate(certPem);
  const der = new Uint8Array(cert.rawData);
  const material = keyMaterialFromPem(keyPem);
  if (Buffer.compare(Buffer.from(cert.publicKey.rawData), Buffer.from(material.spkiDer)) !== 0) {
    throw new TypeError(`${file}: the private key does not match the certificate's public key`);
  }
  const bc = cert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new TypeError(`${file}: not a CA certificate (basicConstraints cA is not true)`);
  // Prefer the key identifier the certificate states (OpenSSL's default is also SHA-1 method (1)).
  const ski = cert.getExtension(x509.SubjectKeyIdentifierExtension);
  const keyId = ski ? new Uint8Array(Buffer.from(ski.keyId, 'hex')) : keyIdentifier(material.spkiDer);
  return {
    der,
    nameDer: subjectNameDer(der),
    material,
    aki: authorityKeyIdentifier(keyId),
    pathLength: bc.pathLength,
  };
}

function trustDomainOf(certDer: Uint8Array): string | undefined {
  const san = new x509.X509Certificate(certDer).getExtension(x509.SubjectAlternativeNameExtension);
  for (const name of san?.names.items ?? []) {
    if (name.type === 'url' && name.value.startsWith('spiffe://')) {
      return name.value.slice('spiffe://'.length).split('/')[0];
    }
  }
  return undefined;
}
