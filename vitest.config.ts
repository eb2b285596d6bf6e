import { defineConfig } from 'vitest/config';

// One run over every package: tests import workspace packages through the
// "@hbone/source" export condition, so they exercise the TypeScript sources
// without a build step.
export default defineConfig({
  resolve: { conditions: ['@hbone/source'] },
  ssr: { resolve: { conditions: ['@hbone/source'] } },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'examples/test/**/*.test.ts'],
    environment: 'node',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    reporters: ['default'],
  },
});
