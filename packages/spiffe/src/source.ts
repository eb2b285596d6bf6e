/**
 * Sources of the credentials a workload presents (its X509-SVID) and trusts (bundles). They can
 * change at run time: rotation. Each source has a `generation` that increases on every change,
 * and `onChange` to hear about it; TLS options read the sources on every handshake, so new
 * connections use the new credentials while open ones carry on.
 *
 * - `StaticSource`: fixed values (an `X509Svid` and an `X509Bundle` are static sources too).
 * - `MemorySource`: values you set (a Workload API client or a test drives it).
 * - `FileSource`: PEM / bundle files, re-read when they change on disk.
 */
import { EventEmitter } from 'node:events';
import { type FSWatcher, readFileSync, watch } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BundleSet } from './bundle-set.js';
import { type ChangeListener, ChangeListeners, type Unsubscribe } from './change-listeners.js';
import { InvalidSvidError, SourceClosedError } from './errors.js';
import type { TrustDomain } from './trust-domain.js';
import { X509Bundle, type X509BundleSource } from './x509-bundle.js';
import { X509Svid, type X509SvidSource } from './x509-svid.js';

export type { X509BundleSource, X509SvidSource };

/** Bundles as callers have them: one, a set, or a list (one per trust domain). */
export type BundlesInput = X509Bundle | BundleSet | Iterable<X509Bundle>;

function toBundleSet(bundles: BundlesInput | undefined): BundleSet {
  if (bundles === undefined) return new BundleSet();
  if (bundles instanceof X509Bundle) return new BundleSet([bundles]);
  return new BundleSet(bundles instanceof BundleSet ? bundles.getX509Bundles() : bundles);
}

export interface SourceValues {
  svid?: X509Svid;
  bundles?: BundlesInput;
}

/** Fixed credentials. `generation` is always 0. */
export class StaticSource implements X509SvidSource, X509BundleSource {
  readonly generation = 0;
  readonly #svid: X509Svid | undefined;
  readonly #bundles: BundleSet;

  constructor(values: SourceValues) {
    this.#svid = values.svid;
    this.#bundles = toBundleSet(values.bundles);
  }

  getX509Svid(): X509Svid {
    if (this.#svid === undefined) throw new InvalidSvidError('this source has no X509-SVID');
    return this.#svid;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.#bundles.getX509BundleForTrustDomain(trustDomain);
  }

  getX509Bundles(): readonly X509Bundle[] {
    return this.#bundles.getX509Bundles();
  }
}

/** Credentials you set; every `set*` bumps `generation` and notifies listeners. */
export class MemorySource implements X509SvidSource, X509BundleSource {
  #svid: X509Svid | undefined;
  #bundles: BundleSet;
  #generation = 0;
  readonly #listeners = new ChangeListeners();

  constructor(values: SourceValues = {}) {
    this.#svid = values.svid;
    this.#bundles = toBundleSet(values.bundles);
  }

  get generation(): number {
    return this.#generation;
  }

  getX509Svid(): X509Svid {
    if (this.#svid === undefined) throw new InvalidSvidError('this source has no X509-SVID');
    return this.#svid;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.#bundles.getX509BundleForTrustDomain(trustDomain);
  }

  getX509Bundles(): readonly X509Bundle[] {
    return this.#bundles.getX509Bundles();
  }

  /** Replaces the SVID (rotation). */
  setX509Svid(svid: X509Svid): void {
    if (svid === this.#svid) return;
    this.#svid = svid;
    this.#changed();
  }

  /** Replaces every bundle. */
  setX509Bundles(bundles: BundlesInput): void {
    this.#bundles = toBundleSet(bundles);
    this.#changed();
  }

  /** Adds or replaces the bundle of one trust domain. */
  setX509Bundle(bundle: X509Bundle): void {
    const next = toBundleSet(this.#bundles);
    next.set(bundle);
    this.#bundles = next;
    this.#changed();
  }

  onChange(listener: ChangeListener): Unsubscribe {
    return this.#listeners.add(listener);
  }

  #changed(): void {
    this.#generation++;
    this.#listeners.emit();
  }
}

export interface FileSourceOptions {
  /** PEM: the leaf first, then intermediates. May be the same file as `keyFile`. */
  certFile: string;
  /** PEM private key: PKCS#8, SEC1 or PKCS#1. */
  keyFile: string;
  /** Trust bundle: SPIFFE bundle JSON or PEM. Without it the source holds no bundle. */
  bundleFile?: string;
  /** The trust domain of `bundleFile`; default the SVID's own. */
  bundleTrustDomain?: TrustDomain | string;
  /** Quiet time after the last file event before re-reading; default 100 ms. */
  debounceMs?: number;
}

interface FileSnapshot {
  readonly bytes: readonly Buffer[];
  readonly svid: X509Svid;
  readonly bundles: BundleSet;
}

/**
 * Credentials from files, re-read when they change. The files are loaded once, synchronously, by
 * the constructor (which throws the typed error of a bad file). The directories holding them are
 * watched (so atomic renames and Kubernetes' symlink swaps are seen); after `debounceMs` of quiet
 * the files are re-read. A bad read keeps the last good credentials and emits `'reloadError'`
 * (err); a good one that differs bumps `generation` and emits `'change'`. Watchers never keep
 * the process alive; `close()` stops everything and is idempotent.
 */
export class FileSource extends EventEmitter implements X509SvidSource, X509BundleSource {
  readonly #options: FileSourceOptions;
  #snapshot: FileSnapshot;
  #generation = 0;
  #closed = false;
  #timer: NodeJS.Timeout | undefined;
  readonly #watchers: FSWatcher[] = [];
  readonly #listeners = new ChangeListeners();

  constructor(options: FileSourceOptions) {
    super();
    this.#options = { ...options };
    this.#snapshot = this.#read();
    const files = [options.certFile, options.keyFile, options.bundleFile].filter(
      (f): f is string => f !== undefined,
    );
    const dirs = [...new Set(files.map((f) => dirname(resolve(f))))];
    try {
      for (const dir of dirs) {
        const w = watch(dir, { persistent: false }, () => this.#schedule());
        w.on('error', (err) => this.emit('reloadError', err));
        this.#watchers.push(w);
      }
    } catch (err) {
      this.close();
      throw err;
    }
  }

  get generation(): number {
    return this.#generation;
  }

  get closed(): boolean {
    return this.#closed;
  }

  getX509Svid(): X509Svid {
    this.#checkOpen();
    return this.#snapshot.svid;
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    this.#checkOpen();
    return this.#snapshot.bundles.getX509BundleForTrustDomain(trustDomain);
  }

  getX509Bundles(): readonly X509Bundle[] {
    this.#checkOpen();
    return this.#snapshot.bundles.getX509Bundles();
  }

  onChange(listener: ChangeListener): Unsubscribe {
    return this.#listeners.add(listener);
  }

  /**
   * Re-reads the files now. Returns true when the credentials changed. A bad file throws its
   * typed error and leaves the current credentials in place.
   */
  reload(): boolean {
    this.#checkOpen();
    const next = this.#read();
    const prev = this.#snapshot.bytes;
    if (next.bytes.length === prev.length && next.bytes.every((b, i) => b.equals(prev[i]!))) return false;
    this.#snapshot = next;
    this.#generation++;
    this.emit('change');
    this.#listeners.emit();
    return true;
  }

  /** Stops watching. Afterwards every getter throws `SourceClosedError`. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const w of this.#watchers) w.close();
    this.#watchers.length = 0;
    this.#listeners.clear();
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (this.#closed) return;
      try {
        this.reload();
      } catch (err) {
        this.emit('reloadError', err);
      }
    }, this.#options.debounceMs ?? 100);
    this.#timer.unref();
  }

  #read(): FileSnapshot {
    const o = this.#options;
    const cert = readFileSync(o.certFile);
    const key = o.keyFile === o.certFile ? cert : readFileSync(o.keyFile);
    const svid = X509Svid.parse(cert, key);
    const bytes = [cert, key];
    const bundles = new BundleSet();
    if (o.bundleFile !== undefined) {
      const data = readFileSync(o.bundleFile);
      bytes.push(data);
      bundles.set(X509Bundle.parse(o.bundleTrustDomain ?? svid.id.trustDomain, data));
    }
    return { bytes, svid, bundles };
  }

  #checkOpen(): void {
    if (this.#closed) throw new SourceClosedError('FileSource is closed');
  }
}
