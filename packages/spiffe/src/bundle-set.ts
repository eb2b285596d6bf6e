/**
 * Federation: one bundle per trust domain, looked up by the trust domain a peer claims. Bundles
 * are never merged: verification of an ID in trust domain B only ever sees B's authorities.
 */
import { type ChangeListener, ChangeListeners, type Unsubscribe } from './change-listeners.js';
import { InvalidBundleError } from './errors.js';
import { TrustDomain } from './trust-domain.js';
import type { X509Bundle, X509BundleSource } from './x509-bundle.js';

export class BundleSet implements X509BundleSource {
  readonly #bundles = new Map<string, X509Bundle>();
  readonly #listeners = new ChangeListeners();
  #list: readonly X509Bundle[] | undefined;
  #generation = 0;

  /** Two bundles for the same trust domain is an error: say which one you mean. */
  constructor(bundles: Iterable<X509Bundle> = []) {
    for (const b of bundles) {
      if (this.#bundles.has(b.trustDomain.name)) {
        throw new InvalidBundleError(`two bundles for trust domain "${b.trustDomain.name}"`);
      }
      this.#bundles.set(b.trustDomain.name, b);
    }
  }

  /** Increases on every `set`/`delete`/`clear` that changes the set. */
  get generation(): number {
    return this.#generation;
  }

  get size(): number {
    return this.#bundles.size;
  }

  /** Adds or replaces the bundle of `bundle.trustDomain`. */
  set(bundle: X509Bundle): this {
    if (this.#bundles.get(bundle.trustDomain.name) === bundle) return this;
    this.#bundles.set(bundle.trustDomain.name, bundle);
    this.#changed();
    return this;
  }

  get(trustDomain: TrustDomain | string): X509Bundle | undefined {
    return this.#bundles.get(
      typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain).name : trustDomain.name,
    );
  }

  has(trustDomain: TrustDomain | string): boolean {
    return this.get(trustDomain) !== undefined;
  }

  delete(trustDomain: TrustDomain | string): boolean {
    const name = typeof trustDomain === 'string' ? TrustDomain.parse(trustDomain).name : trustDomain.name;
    const had = this.#bundles.delete(name);
    if (had) this.#changed();
    return had;
  }

  clear(): void {
    if (this.#bundles.size === 0) return;
    this.#bundles.clear();
    this.#changed();
  }

  trustDomains(): TrustDomain[] {
    return [...this.#bundles.values()].map((b) => b.trustDomain);
  }

  [Symbol.iterator](): IterableIterator<X509Bundle> {
    return this.#bundles.values();
  }

  getX509BundleForTrustDomain(trustDomain: TrustDomain): X509Bundle | undefined {
    return this.#bundles.get(trustDomain.name);
  }

  getX509Bundles(): readonly X509Bundle[] {
    this.#list ??= Object.freeze([...this.#bundles.values()]);
    return this.#list;
  }

  onChange(listener: ChangeListener): Unsubscribe {
    return this.#listeners.add(listener);
  }

  #changed(): void {
    this.#list = undefined;
    this.#generation++;
    this.#listeners.emit();
  }
}
