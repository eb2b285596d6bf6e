/**
 * Where an idle tunnel's V8 heap goes, object type by object type: opens 1,000 tunnels (10
 * connections x 100) from this process to a server process, takes a heap snapshot before and
 * after (GC first), and prints the per-tunnel difference grouped by V8 node type and name.
 * `--bare` does the same with bare node:http2 CONNECT streams, for comparison.
 *
 *   node --expose-gc --conditions=@hbone/source --import tsx bench/lib/heap-per-tunnel.ts [--bare]
 */
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { writeHeapSnapshot } from 'node:v8';
import { BENCH_REQUEST, bareH2Dialer, hboneDialer } from './clients.js';
import { mintCreds, SERVER_ID } from './creds.js';
import { withServer } from './peer.js';

const CONNECTIONS = 10;
const PER_CONNECTION = 100;

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size and count per "type:name" in a heap snapshot file. */
function byType(file: string): Map<string, { size: number; count: number }> {
  const snap = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const width = snap.snapshot.meta.node_fields.length;
  const types = snap.snapshot.meta.node_types[0];
  const out = new Map<string, { size: number; count: number }>();
  for (let i = 0; i < snap.nodes.length; i += width) {
    const key = `${types[snap.nodes[i]!]}:${snap.strings[snap.nodes[i + 1]!]!.slice(0, 50)}`;
    const e = out.get(key) ?? { size: 0, count: 0 };
    e.size += snap.nodes[i + 3]!;
    e.count++;
    out.set(key, e);
  }
  return out;
}

function snapshot(): string {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) throw new Error('run with --expose-gc');
  gc();
  gc();
  return writeHeapSnapshot(join(tmpdir(), `hbone-heap-${process.pid}-${Date.now()}.heapsnapshot`));
}

async function main(): Promise<void> {
  const bare = process.argv.includes('--bare');
  const creds = await mintCreds();
  await withServer(creds, async (sp) => {
    const port = await sp.listen(bare ? { proto: 'h2', mode: 'echo' } : { proto: 'hbone', mode: 'hold' });
    const kept: Duplex[] = [];
    const closers: Array<() => void> = [];
    const openers: Array<() => Promise<Duplex>> = [];
    for (let i = 0; i < CONNECTIONS; i++) {
      if (bare) {
        const b = await bareH2Dialer(creds)(port);
        closers.push(b.close);
        openers.push(b.open);
      } else {
        const s = await hboneDialer(creds, SERVER_ID)(port);
        closers.push(() => s.destroy());
        openers.push(() => s.open(BENCH_REQUEST));
      }
    }
    const before = snapshot();
    for (const open of openers)
      kept.push(...(await Promise.all(Array.from({ length: PER_CONNECTION }, open))));
    for (const t of kept) t.on('error', () => {});
    const after = snapshot();
    const a = byType(before);
    const b = byType(after);
    const n = kept.length;
    const rows: Array<{ key: string; bytes: number; objects: number }> = [];
    for (const [key, v] of b) {
      const o = a.get(key) ?? { size: 0, count: 0 };
      if (Math.abs(v.size - o.size) >= n * 8)
        rows.push({ key, bytes: (v.size - o.size) / n, objects: (v.count - o.count) / n });
    }
    rows.sort((x, y) => y.bytes - x.bytes);
    const total = rows.reduce((s, r) => s + r.bytes, 0);
    process.stdout.write(
      `${bare ? 'bare node:http2 stream' : 'HBONE tunnel'}: ${total.toFixed(0)} bytes of heap per stream (${n} streams; rows >= 8 B)\n`,
    );
    for (const r of rows.slice(0, 30)) {
      process.stdout.write(
        `${r.bytes.toFixed(0).padStart(6)} B ${r.objects.toFixed(1).padStart(5)} objects  ${r.key}\n`,
      );
    }
    rmSync(before);
    rmSync(after);
    for (const close of closers) close();
  });
}

void main();
