#!/usr/bin/env node
// Fails when a source file imports itself through a chain of relative imports, or when the
// package graph has a cycle (ARCHITECTURE.md: examples -> pool -> hbone -> spiffe, testkit -> spiffe).
// Kept dependency-free on purpose: it only needs to read `import ... from '...'` lines.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '..');
const roots = ['packages', 'examples'].map((d) => join(root, d));
const files = [];
function walk(dir) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules' || name === 'dist') continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (/\.ts$/.test(name) && !name.endsWith('.d.ts') && p.includes(`${'/src/'}`)) files.push(p);
  }
}
for (const r of roots) walk(r);

const importRe = /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
const graph = new Map();
const pkgGraph = new Map();
const pkgOf = (f) =>
  relative(root, f)
    .split('/')
    .slice(0, relative(root, f).startsWith('examples') ? 1 : 2)
    .join('/');
for (const f of files) {
  const src = readFileSync(f, 'utf8');
  const edges = [];
  for (const m of src.matchAll(importRe)) {
    const spec = m[1] ?? m[2];
    if (spec.startsWith('.')) {
      edges.push(resolve(dirname(f), spec).replace(/\.js$/, '.ts'));
    } else if (spec.startsWith('@hbone/')) {
      const name = spec.split('/')[1];
      const target = name === 'examples' ? 'examples' : `packages/${name}`;
      const from = pkgOf(f);
      if (!pkgGraph.has(from)) pkgGraph.set(from, new Set());
      if (target !== from) pkgGraph.get(from).add(target);
    }
  }
  graph.set(f, edges);
}

function findCycle(g) {
  const state = new Map();
  const stack = [];
  const visit = (n) => {
    state.set(n, 1);
    stack.push(n);
    for (const m of g.get(n) ?? []) {
      if (state.get(m) === 1) return [...stack.slice(stack.indexOf(m)), m];
      if (!state.has(m)) {
        const c = visit(m);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 2);
    return null;
  };
  for (const n of g.keys())
    if (!state.has(n)) {
      const c = visit(n);
      if (c) return c;
    }
  return null;
}

const fileCycle = findCycle(graph);
const pkgCycle = findCycle(new Map([...pkgGraph].map(([k, v]) => [k, [...v]])));
if (fileCycle || pkgCycle) {
  console.error('import cycle:', (fileCycle ?? pkgCycle).map((p) => relative(root, p)).join(' -> '));
  process.exit(1);
}
console.log(`no import cycles (${files.length} files)`);
