/**
 * `--cert F --key F --bundle F [--federate TD=F]...` -> the SVID and bundle sources the hbone
 * client and server take.
 *
 * - `--cert`: PEM, our leaf first, then intermediates (as `hbone ca issue` or openssl writes it).
 * - `--key`: its private key (PKCS#8, SEC1 or PKCS#1 PEM; may be the same file as `--cert`).
 * - `--bundle`: the trust bundle of our own SVID's trust domain, PEM or SPIFFE bundle JSON.
 * - `--federate TD=F`: the bundle (PEM or JSON) of another trust domain; repeatable. Bundles are
 *   never merged: a peer of TD is verified against F only.
 *
 * Every failure is an error whose `code` is that of the underlying problem (ENOENT,
 * ERR_SVID_INVALID, ERR_BUNDLE_INVALID, ...) and whose message names the flag and the file.
 */
import { readFileSync } from 'node:fs';
import {
  BundleSet,
  type ChangeListener,
  FileSource,
  StaticSource,
  TrustDomain,
  type Unsubscribe,
  verifyX509Svid,
  X509Bundle,
  type X509BundleSource,
  X509Svid,
  type X509SvidSource,
} from '@hbone/spiffe';
import { CliError, parseKeyValue, UsageError } from './args.js';
import { errorCode, errorMessage } from './output.js';

export interface CredentialFlags {
  cert: string;
  key: string;
  bundle: string;
  /** `TD=FILE` entries. */
  federate?: readonly string[];
  /** Re-read cert, key and bundle when they change on disk (long-running servers). */
  watch?: boolean;
}

export interface Credentials {
  readonly svidSource: X509SvidSource;
  readonly bundleSource: X509BundleSource;
  /** The SVID as loaded at start. */
  readonly svid: X509Svid;
  /** Trust domains we hold a bundle for: ours first, then the federated ones. */
  readonly trustDomains: readonly string[];
  /** Problems worth a warning line (e.g. a bundle that does not anchor our own SVID). */
  readonly warnings: readonly string[];
  /** Stops watching files. Idempotent. */
  close(): void;
}

/** Reads a file named by a flag; the error names the flag. */
export function readFlagFile(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliError(errorCode(err), `--${flag} ${path}: cannot read: ${errorMessage(err)}`, {
      cause: err,
    });
  }
}

/** Runs `fn`; a failure is re-thrown with the same code and a message that names the flag and file. */
function about<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new CliError(errorCode(err), `${what}: ${errorMessage(err)}`, { cause: err });
  }
}

/**
 * Our own bundle (which may rotate with the files) in front of the federated ones (read once).
 * Lookups never mix them: each trust domain has exactly one bundle.
 */
class FederatedBundles implements X509BundleSource {
  readonly #own: X509BundleSource;
  readonly #federated: BundleSet;

  constructor(own: X509BundleSource, federated: BundleSet) {
    this.#own = own;
    this.#federated = federated;
  }

  get generation(): number {
    return this.#own.generation;
  }

  getX509BundleForTrustDomain(td: TrustDomain): X509Bundle | undefined {
    return this.#own.getX509BundleForTrustDomain(td) ?? this.#federated.getX509BundleForTrustDomain(td);
  }

  getX509Bundles(): readonly X509Bundle[] {
    return [...this.#own.getX509Bundles(), ...this.#federated.getX509Bundles()];
  }

  onChange(listener: ChangeListener): Unsubscribe {
    return this.#own.onChange?.(listener) ?? (() => {});
  }
}

/** Parses `--federate TD=FILE` entries into one bundle per trust domain (never ours). */
export function loadFederated(entries: readonly string[], own: TrustDomain): BundleSet {
  const set = new BundleSet();
  for (const entry of entries) {
    const { key, value: file } = parseKeyValue('federate', entry);
    const td = about(`--federate ${entry}`, () => TrustDomain.parse(key));
    if (td.equals(own)) {
      throw new UsageError(
        `--federate ${entry}: "${td.name}" is our own trust domain; give its bundle with --bundle`,
      );
    }
    if (set.has(td)) throw new UsageError(`--federate: two bundles for trust domain "${td.name}"`);
    const data = readFlagFile('federate', file);
    set.set(about(`--federate ${entry}`, () => X509Bundle.parse(td, data)));
  }
  return set;
}

export function loadCredentials(flags: CredentialFlags): Credentials {
  const certPem = readFlagFile('cert', flags.cert);
  const keyPem = flags.key === flags.cert ? certPem : readFlagFile('key', flags.key);
  const svid = about(`--cert ${flags.cert} / --key ${flags.key}`, () => X509Svid.parse(certPem, keyPem));
  const bundleData = readFlagFile('bundle', flags.bundle);
  const own = about(`--bundle ${flags.bundle}`, () => X509Bundle.parse(svid.id.trustDomain, bundleData));
  const federated = loadFederated(flags.federate ?? [], svid.id.trustDomain);

  const warnings: string[] = [];
  try {
    verifyX509Svid(svid.chainDer(), own);
  } catch (err) {
    warnings.push(
      `--bundle ${flags.bundle} does not verify our own SVID ${svid.id} (${errorCode(err)}: ${errorMessage(err)}); peers of our trust domain will likely reject us`,
    );
  }

  let svidSource: X509SvidSource;
  let ownBundles: X509BundleSource;
  let close: () => void = () => {};
  if (flags.watch) {
    const files = about('watching the credential files', () => {
      return new FileSource({ certFile: flags.cert, keyFile: flags.key, bundleFile: flags.bundle });
    });
    svidSource = files;
    ownBundles = files;
    close = () => files.close();
  } else {
    const fixed = new StaticSource({ svid, bundles: own });
    svidSource = fixed;
    ownBundles = fixed;
  }
  return {
    svidSource,
    bundleSource: new FederatedBundles(ownBundles, federated),
    svid,
    trustDomains: [svid.id.trustDomain.name, ...federated.trustDomains().map((t) => t.name)],
    warnings,
    close,
  };
}

/** The files a FileSource watches emit 'reloadError' and 'change'; a server reports both. */
export function onReload(
  source: X509SvidSource,
  events: { change: () => void; error: (err: unknown) => void },
): void {
  if (source instanceof FileSource) {
    source.on('change', events.change);
    source.on('reloadError', events.error);
  }
}
