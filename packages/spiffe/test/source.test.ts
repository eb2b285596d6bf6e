import { once } from 'node:events';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TestCa } from '@hbone/testkit';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  FileSource,
  InvalidSvidError,
  MemorySource,
  SourceClosedError,
  SpiffeError,
  StaticSource,
  TrustDomain,
  X509Bundle,
  X509Svid,
} from '../src/index.js';

const TD = 'example.org';
const ID = `spiffe://${TD}/ns/default/sa/app`;
let ca: TestCa;
let dir: string;
const sources: FileSource[] = [];

beforeAll(async () => {
  ca = await TestCa.create(TD);
  dir = await mkdtemp(join(tmpdir(), 'hbone-source-'));
});
afterEach(() => {
  for (const s of sources.splice(0)) s.close();
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('StaticSource and MemorySource', () => {
  it('StaticSource serves fixed values at generation 0', async () => {
    const m = await ca.mint(ID);
    const svid = X509Svid.parse(m.certChainPem, m.keyPem);
    const bundle = X509Bundle.fromPem(TD, ca.bundlePem);
    const s = new StaticSource({ svid, bundles: [bundle] });
    expect(s.getX509Svid()).toBe(svid);
    expect(s.getX509BundleForTrustDomain(TrustDomain.parse(TD))).toBe(bundle);
    expect(s.getX509BundleForTrustDomain(TrustDomain.parse('other.org'))).toBeUndefined();
    expect(s.generation).toBe(0);
    expect(() => new StaticSource({ bundles: bundle }).getX509Svid()).toThrow(InvalidSvidError);
  });

  it('MemorySource bumps its generation and tells listeners on every change', async () => {
    const [m1, m2] = await Promise.all([ca.mint(ID), ca.mint(ID)]);
    const s1 = X509Svid.parse(m1.certChainPem, m1.keyPem);
    const s2 = X509Svid.parse(m2.certChainPem, m2.keyPem);
    const source = new MemorySource({ svid: s1 });
    const seen: number[] = [];
    const stop = source.onChange(() => seen.push(source.generation));
    source.setX509Svid(s2);
    source.setX509Svid(s2);
    source.setX509Bundle(X509Bundle.fromPem(TD, ca.bundlePem));
    stop();
    stop();
    source.setX509Bundles([]);
    expect(seen).toEqual([1, 2]);
    expect(source.generation).toBe(3);
    expect(source.getX509Svid()).toBe(s2);
    expect(source.getX509Bundles()).toEqual([]);
  });
});

describe('FileSource', () => {
  async function writeSvid(sub: string, m: { certChainPem: string; keyPem: string }) {
    await writeFile(join(dir, sub, 'key.pem'), m.keyPem);
    await writeFile(join(dir, sub, 'cert.pem'), m.certChainPem);
  }

  async function open(sub: string) {
    await mkdir(join(dir, sub), { recursive: true });
    const m = await ca.mint(ID);
    await writeSvid(sub, m);
    await writeFile(
      join(dir, sub, 'bundle.json'),
      X509Bundle.fromPem(TD, ca.bundlePem, { sequence: 1n }).toJwks(),
    );
    const source = new FileSource({
      certFile: join(dir, sub, 'cert.pem'),
      keyFile: join(dir, sub, 'key.pem'),
      bundleFile: join(dir, sub, 'bundle.json'),
      debounceMs: 30,
    });
    sources.push(source);
    return { source, m };
  }

  it('loads the SVID and a JSON bundle, and refuses bad files at construction with the typed error', async () => {
    const { source, m } = await open('load');
    expect(source.getX509Svid().id.toString()).toBe(ID);
    expect(source.getX509Svid().leaf.serialNumber).toBe(
      X509Svid.parse(m.certChainPem, m.keyPem).leaf.serialNumber,
    );
    expect(source.getX509BundleForTrustDomain(TrustDomain.parse(TD))?.sequence).toBe(1n);
    await writeFile(join(dir, 'load', 'bad.pem'), 'garbage');
    expect(
      () => new FileSource({ certFile: join(dir, 'load', 'bad.pem'), keyFile: join(dir, 'load', 'key.pem') }),
    ).toThrow(SpiffeError);
  });

  it('re-reads changed files: new SVID, new generation, change event', async () => {
    const { source } = await open('rotate');
    const before = source.getX509Svid().leaf.serialNumber;
    const changed = once(source, 'change');
    const next = await ca.mint(ID);
    await writeSvid('rotate', next);
    await changed;
    expect(source.generation).toBe(1);
    expect(source.getX509Svid().leaf.serialNumber).not.toBe(before);
    expect(source.getX509Svid().certChainPem).toBe(next.certChainPem);
  });

  it('sees an atomic rename (how Kubernetes and cert tools replace files)', async () => {
    const { source } = await open('rename');
    const changed = once(source, 'change');
    const next = await ca.mint(ID);
    await writeFile(join(dir, 'rename', 'key.pem.tmp'), next.keyPem);
    await writeFile(join(dir, 'rename', 'cert.pem.tmp'), next.certChainPem);
    await rename(join(dir, 'rename', 'key.pem.tmp'), join(dir, 'rename', 'key.pem'));
    await rename(join(dir, 'rename', 'cert.pem.tmp'), join(dir, 'rename', 'cert.pem'));
    await changed;
    expect(source.getX509Svid().certChainPem).toBe(next.certChainPem);
  });

  it('keeps the last good credentials when a file goes bad, and reports the typed error', async () => {
    const { source } = await open('bad');
    const good = source.getX509Svid();
    const failed = once(source, 'reloadError');
    await writeFile(join(dir, 'bad', 'cert.pem'), '-----BEGIN CERTIFICATE-----\nAAAA');
    const [err] = await failed;
    expect(err).toBeInstanceOf(SpiffeError);
    expect(source.getX509Svid()).toBe(good);
    expect(source.generation).toBe(0);
  });

  it('close() is idempotent and later reads throw SourceClosedError', async () => {
    const { source } = await open('close');
    source.close();
    source.close();
    expect(source.closed).toBe(true);
    expect(() => source.getX509Svid()).toThrow(SourceClosedError);
    expect(() => source.getX509Bundles()).toThrow(SourceClosedError);
  });
});
