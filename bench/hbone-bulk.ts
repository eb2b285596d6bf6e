/**
 * Benchmark 1: one tunnel, bulk bytes one way (client -> server), against raw mutual TLS 1.3 over
 * the same loopback with the same certificates. Rounds alternate TLS / HBONE so drift on a shared
 * machine hits both; the figure is the median round.
 */

import type { Duplex } from 'node:stream';
import { bareH2Dialer, closeStream, hboneDialer, openTunnel, rawTlsDialer } from './lib/clients.js';
import { CpuLedger, measureCpu } from './lib/cpu.js';
import { mintCreds, SERVER_ID } from './lib/creds.js';
import { withServer } from './lib/peer.js';
import { type ModuleReport, pairedRatio, result, round } from './lib/result.js';
import { alternate } from './lib/rounds.js';
import { median } from './lib/stats.js';
import { type BulkOptions, type BulkResult, bulkSend } from './lib/traffic.js';

const MiB = 2 ** 20;
/** 128 MiB (or 5 s) per round: short rounds, many pairs, so a burst of outside load skews few. */
export const BULK: BulkOptions = { blockSize: 4 * MiB, maxBlocks: 32, maxMs: 5_000 };
const WARMUP: BulkOptions = { blockSize: 4 * MiB, maxBlocks: 8, maxMs: 2_000 };
const ROUNDS = 9;

export async function run(): Promise<ModuleReport> {
  const creds = await mintCreds();
  return withServer(creds, async (sp) => {
    const tlsPort = await sp.listen({ proto: 'tls', mode: 'sink' });
    const h2Port = await sp.listen({ proto: 'h2', mode: 'sink' });
    const hbonePort = await sp.listen({ proto: 'hbone', mode: 'sink' });
    // The same HBONE server with node's native socket path (no write-buffered socket).
    const nativePort = await sp.listen({ proto: 'hbone', mode: 'sink', bufferWrites: false });
    const dialTls = rawTlsDialer(creds);
    const bare = await bareH2Dialer(creds)(h2Port);
    const session = await hboneDialer(creds, SERVER_ID)(hbonePort);
    const nativeSession = await hboneDialer(creds, SERVER_ID)(nativePort);

    const over = async (open: () => Promise<Duplex>, o: BulkOptions): Promise<BulkResult> => {
      const s = await open();
      try {
        return await bulkSend(s, o);
      } finally {
        await closeStream(s);
      }
    };
    const tlsRound = (o: BulkOptions) => over(() => dialTls(tlsPort), o);
    const h2Round = (o: BulkOptions) => over(() => bare.open(), o);
    const hboneRound = (o: BulkOptions) => over(() => openTunnel(session), o);
    const nativeRound = (o: BulkOptions) => over(() => openTunnel(nativeSession), o);

    await tlsRound(WARMUP);
    await h2Round(WARMUP);
    await hboneRound(WARMUP);
    await nativeRound(WARMUP);
    let bytes = 0;
    const cpu = new CpuLedger();
    const mbps = async (name: string, f: (o: BulkOptions) => Promise<BulkResult>): Promise<number> => {
      const m = await measureCpu(sp, () => f(BULK));
      cpu.add(name, m.value.bytes, m.clientCpuUs, m.serverCpuUs);
      bytes = Math.max(bytes, m.value.bytes);
      return m.value.mbps;
    };
    const { tls, h2, hbone, hboneNative } = await alternate('bulk', ROUNDS, {
      tls: () => mbps('tls', tlsRound),
      h2: () => mbps('h2', h2Round),
      hbone: () => mbps('hbone', hboneRound),
      hboneNative: () => mbps('hboneNative', nativeRound),
    });
    nativeSession.destroy();
    bare.close();
    session.destroy();
    return {
      results: [
        result({
          name: 'bulk-one-tunnel',
          value: median(hbone),
          unit: 'MB/s',
          baseline: median(tls),
          baselineName: 'raw mutual TLS 1.3, one connection',
          ratio: pairedRatio(hbone, tls),
          target: { of: 'ratio', op: '>=', value: 0.9, source: 'issue-3' },
          details: {
            direction: 'client -> server',
            bytesPerRound: bytes,
            writeSize: 64 * 1024,
            rounds: ROUNDS,
            ratioOfMedians: round(median(hbone) / median(tls)),
            ratioPerRound: hbone.map((x, i) => round(x / tls[i]!)),
            hboneRoundsMBps: hbone.map((x) => round(x, 1)),
            tlsRoundsMBps: tls.map((x) => round(x, 1)),
            bareNodeHttp2RoundsMBps: h2.map((x) => round(x, 1)),
            bareNodeHttp2OverTls: round(pairedRatio(h2, tls)),
            hboneOverBareNodeHttp2: round(pairedRatio(hbone, h2)),
            hboneServerBufferWritesFalseRoundsMBps: hboneNative.map((x) => round(x, 1)),
            hboneServerBufferWritesFalseOverTls: round(pairedRatio(hboneNative, tls)),
            cpuNsPerByte: cpu.toJSON(),
            cpuBoundRatio: cpu.boundRatio('hbone', 'tls'),
          },
        }),
      ],
    };
  });
}
