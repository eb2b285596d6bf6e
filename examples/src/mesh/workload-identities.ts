/**
 * Where a mesh component gets the X509-SVIDs it presents: istiod's role. A node proxy acts as
 * each of its workloads, so it holds one SVID per workload identity; a gateway or waypoint holds
 * its own. Here a CA (the testkit's, as `hbone ca init` writes it) signs them in-process, and the
 * trust bundles are the CAs' roots plus any federated bundles: never merged across trust domains.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Credentials } from '@hbone/pool';
import { BundleSet, SpiffeId, StaticSource, X509Bundle, X509Svid } from '@hbone/spiffe';
import { TestCa } from '@hbone/testkit';
import type { CredentialsConfig } from './config.js';

export type { Credentials };

export interface IdentitySource {
  /** The trust bundles this component holds, one per trust domain. */
  readonly bundles: BundleSet;
  /** Mints (once) the SVIDs of these identities. */
  prepare(ids: Iterable<string>): Promise<void>;
  /** The sources for an identity prepared earlier; throws for an unknown one. */
  credentials(id: string): Credentials;
  /** Identities held, with their certificate's expiry (for the config dump). */
  held(): Array<{ identity: string; notAfter: string }>;
}

/** SVIDs signed by in-process CAs (one per trust domain this component issues for). */
export class CaIdentities implements IdentitySource {
  readonly bundles: BundleSet;
  readonly #cas: Map<string, TestCa>;
  readonly #held = new Map<string, { source: StaticSource; notAfter: Date }>();
  readonly #pending = new Map<string, Promise<void>>();

  /**
   * @param cas signing CAs; their roots are trusted.
   * @param extraBundles other trust domains' bundles (federation), or a replacement for a CA's own
   *   (a test of a root CA mismatch trusts an impostor root).
   */
  constructor(cas: readonly TestCa[], extraBundles: readonly X509Bundle[] = []) {
    this.#cas = new Map(cas.map((c) => [c.trustDomain, c]));
    const bundles = new Map<string, X509Bundle>();
    for (const c of cas) bundles.set(c.trustDomain, X509Bundle.fromPem(c.trustDomain, c.bundlePem));
    for (const b of extraBundles) bundles.set(b.trustDomain.name, b);
    this.bundles = new BundleSet(bundles.values());
  }

  /** From a `credentials:` section: the CA directory, then the federated bundle files. */
  static async fromConfig(cfg: CredentialsConfig, baseDir = process.cwd()): Promise<CaIdentities> {
    const ca = await TestCa.load(resolve(baseDir, cfg.ca));
    const extra = await Promise.all(
      cfg.bundles.map(async (b) =>
        X509Bundle.fromPem(b.trustDomain, await readFile(resolve(baseDir, b.file), 'utf8')),
      ),
    );
    return new CaIdentities([ca], extra);
  }

  async prepare(ids: Iterable<string>): Promise<void> {
    const waits: Array<Promise<void>> = [];
    for (const id of ids) {
      if (this.#held.has(id)) continue;
      let p = this.#pending.get(id);
      if (!p) {
        p = this.#mint(id);
        this.#pending.set(id, p);
      }
      waits.push(p);
    }
    await Promise.all(waits);
  }

  async #mint(id: string): Promise<void> {
    const td = SpiffeId.parse(id).trustDomain.name;
    const ca = this.#cas.get(td);
    if (!ca) {
      throw new Error(
        `no CA for trust domain ${td}: cannot issue ${id} (CAs: ${[...this.#cas.keys()].join(', ')})`,
      );
    }
    const minted = await ca.mint(id);
    const svid = X509Svid.parse(minted.certChainPem, minted.keyPem);
    this.#held.set(id, {
      source: new StaticSource({ svid, bundles: this.bundles }),
      notAfter: minted.notAfter,
    });
    this.#pending.delete(id);
  }

  credentials(id: string): Credentials {
    const h = this.#held.get(id);
    if (!h) throw new Error(`no SVID prepared for ${id}`);
    return { svidSource: h.source, bundleSource: h.source };
  }

  held(): Array<{ identity: string; notAfter: string }> {
    return [...this.#held].map(([identity, h]) => ({ identity, notAfter: h.notAfter.toISOString() }));
  }
}
