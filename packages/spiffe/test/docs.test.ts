/**
 * docs/spiffe.md promises that its examples run as they are: this runs every ```ts block, each
 * as its own module (with `@hbone/spiffe` pointed at this package's sources).
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it, vi } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const doc = readFileSync(join(here, '../../../docs/spiffe.md'), 'utf8');
const blocks = [...doc.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]!);
const written: string[] = [];

afterAll(() => {
  for (const f of written) rmSync(f, { force: true });
});

describe('docs/spiffe.md examples', () => {
  it('has examples', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(5);
  });

  it.each(blocks.map((code, i) => [i + 1, code] as const))('example %i runs', async (i, code) => {
    const file = join(here, `.docs-example-${i}.ts`);
    writeFileSync(file, code.replaceAll("from '@hbone/spiffe'", "from '../src/index.js'"));
    written.push(file);
    const log = vi.spyOn(console, 'log').mockImplementation(() => {});
    try {
      await import(pathToFileURL(file).href);
      expect(log).toHaveBeenCalled();
    } finally {
      log.mockRestore();
    }
  });
});
