import { StaticSource, X509Bundle, X509Svid } from '@hbone/spiffe';
import type { MintedSvid, TestCa } from '@hbone/testkit';

export interface Identity {
  readonly id: string;
  readonly minted: MintedSvid;
  /** What client and server options take: `{ svidSource, bundleSource }`. */
  readonly sources: { svidSource: StaticSource; bundleSource: StaticSource };
}

/** Wraps a minted SVID and the bundles of the given CAs into static sources. */
export function identityFromMinted(minted: MintedSvid, cas: readonly TestCa[]): Identity {
  const svid = X509Svid.parse(minted.certChainPem, minted.keyPem);
  const bundles = cas.map((ca) => X509Bundle.fromPem(ca.trustDomain, ca.bundlePem));
  const source = new StaticSource({ svid, bundles });
  return { id: minted.id, minted, sources: { svidSource: source, bundleSource: source } };
}
