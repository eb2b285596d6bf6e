/**
 * Benchmark 2: 100 concurrent tunnels on one HBONE connection, each sending its share of the
 * bulk one way; aggregate MB/s against one raw mutual TLS 1.3 connection carrying the same number
 * of bytes (the tunnels share one connection, so one TLS connection is their ceiling).
 */
import { closeStream, hboneDialer, openTunnel, rawTlsDialer } from './lib/clients.js';
import { CpuLedger, measureCpu } from './lib/cpu.js';
import { mintCreds, SERVER_ID } from './lib/creds.js';
import { withServer } from './lib/peer.js';
import { type ModuleReport, pairedRatio, result, round } from './lib/result.js';
import { alternate } from './lib/rounds.js';
import { median } from './lib/stats.js';
import { type BulkOptions, type BulkResult, bulkSend } from './lib/traffic.js';

const KiB = 1024;
const STREAMS = 100;
/** Per tunnel: up to 5 x 256 KiB (125 MiB in all), no new block after 5 s. */
const PER_TUNNEL: BulkOptions = { blockSize: 256 * KiB, maxBlocks: 5, maxMs: 5_000 };
/** The baseline carries the same 125 MiB in the same block size on one connection. */
const ONE_TLS: BulkOptions = { blockSize: 256 * KiB, maxBlocks: 5 * STREAMS, maxMs: 5_000 };
const ROUNDS = 9;

function aggregate(rs: readonly BulkResult[]): { bytes: number; ms: number; mbps: number } {
  const bytes = rs.reduce((a, r) => a + r.bytes, 0);
  const ms = Math.max(...rs.map((r) => r.end)) - Math.min(...rs.map((r) => r.start));
  return { bytes, ms, mbps: bytes / 1e6 / (ms / 1000) };
}

export async function run(): Promise<ModuleReport> {
  const creds = await mintCreds();
  return withServer(creds, async (sp) => {
    const tlsPort = await sp.listen({ proto: 'tls', mode: 'sink' });
    const hbonePort = await sp.listen({ proto: 'hbone', mode: 'sink' });
    const dialTls = rawTlsDialer(creds);
    const session = await hboneDialer(creds, SERVER_ID)(hbonePort);
    // The same HBONE server with node's native socket path (no write-buffered socket).
    const nativePort = await sp.listen({ proto: 'hbone', mode: 'sink', bufferWrites: false });
    const nativeSession = await hboneDialer(creds, SERVER_ID)(nativePort);

    const tlsRound = async (o: BulkOptions) => {
      const s = await dialTls(tlsPort);
      try {
        return await bulkSend(s, o);
      } finally {
        await closeStream(s);
      }
    };
    const hboneRound = async (o: BulkOptions, on = session) => {
      // Open all tunnels first: the figure is the data phase, not the CONNECTs.
      const tunnels = await Promise.all(Array.from({ length: STREAMS }, () => openTunnel(on)));
      try {
        return aggregate(await Promise.all(tunnels.map((t) => bulkSend(t, o))));
      } finally {
        await Promise.all(tunnels.map((t) => closeStream(t)));
      }
    };

    await tlsRound({ ...ONE_TLS, maxBlocks: 100 });
    await hboneRound({ ...PER_TUNNEL, maxBlocks: 1 });
    await hboneRound({ ...PER_TUNNEL, maxBlocks: 1 }, nativeSession);
    let bytes = 0;
    const cpu = new CpuLedger();
    const mbps = async (name: string, f: () => Promise<{ bytes: number; mbps: number }>): Promise<number> => {
      const m = await measureCpu(sp, f);
      cpu.add(name, m.value.bytes, m.clientCpuUs, m.serverCpuUs);
      bytes = Math.max(bytes, m.value.bytes);
      return m.value.mbps;
    };
    const { tls, hbone, hboneNative } = await alternate('concurrent', ROUNDS, {
      tls: () => mbps('tls', () => tlsRound(ONE_TLS)),
      hbone: () => mbps('hbone', () => hboneRound(PER_TUNNEL)),
      hboneNative: () => mbps('hboneNative', () => hboneRound(PER_TUNNEL, nativeSession)),
    });
    session.destroy();
    nativeSession.destroy();
    return {
      results: [
        result({
          name: 'bulk-100-tunnels-one-connection',
          value: median(hbone),
          unit: 'MB/s',
          baseline: median(tls),
          baselineName: 'raw mutual TLS 1.3, one connection, same bytes',
          ratio: pairedRatio(hbone, tls),
          target: { of: 'ratio', op: '>=', value: 0.85, source: 'issue-3' },
          details: {
            direction: 'client -> server',
            tunnels: STREAMS,
            bytesPerRound: bytes,
            bytesPerTunnel: PER_TUNNEL.blockSize * PER_TUNNEL.maxBlocks,
            rounds: ROUNDS,
            ratioOfMedians: round(median(hbone) / median(tls)),
            ratioPerRound: hbone.map((x, i) => round(x / tls[i]!)),
            hboneRoundsMBps: hbone.map((x) => round(x, 1)),
            tlsRoundsMBps: tls.map((x) => round(x, 1)),
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
