import { defineConfig } from 'tsup';

// One ESM bundle plus one .d.ts per package (ESM only: Node >= 20.19). Dependencies, including
// the other @hbone packages, stay external; the workspace resolves them to their sources through
// the "@hbone/source" condition (tsconfig customConditions), and the published package.json
// (publishConfig.exports) points at dist only.
export default defineConfig({
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  // Keep `node:` specifiers as written (tsup strips them by default).
  removeNodeProtocol: false,
});
