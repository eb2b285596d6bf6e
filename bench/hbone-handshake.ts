/**
 * Benchmark 4: new connection + first tunnel per second (TCP, mutual TLS 1.3 with SPIFFE
 * verification both ways, h2 SETTINGS, CONNECT -> 200), against raw mutual-TLS handshakes per
 * second with the same certificates, where one iteration is TCP + TLS 1.3 until the server's
 * first byte arrives (so the server has verified the client certificate, as an HBONE server has
 * before its SETTINGS). Sequential, then 4 at a time; phases alternate TLS / HBONE.
 */
import { performance } from 'node:perf_hooks';
import { hboneDialer, openTunnel, rawTlsDialer } from './lib/clients.js';
import { measureCpu } from './lib/cpu.js';
import { mintCreds, SERVER_ID } from './lib/creds.js';
import { type ServerProcess, withServer } from './lib/peer.js';
import { log, type ModuleReport, pairedRatio, result, round } from './lib/result.js';
import { summarize } from './lib/stats.js';

/** Per phase: stop at this many iterations per worker or this many milliseconds. */
const PHASE_MAX = 2_000;
const PHASE_MS = 1_000;
const PHASES = 5;

interface Phase {
  readonly count: number;
  readonly ms: number;
  readonly latenciesMs: number[];
  readonly clientCpuUs: number;
  readonly serverCpuUs: number;
}

async function phase(sp: ServerProcess, workers: number, once: () => Promise<void>): Promise<Phase> {
  const latenciesMs: number[] = [];
  const m = await measureCpu(sp, async () => {
    const t0 = performance.now();
    const worker = async (): Promise<void> => {
      for (let i = 0; i < PHASE_MAX && performance.now() - t0 < PHASE_MS; i++) {
        const a = performance.now();
        await once();
        latenciesMs.push(performance.now() - a);
      }
    };
    await Promise.all(Array.from({ length: workers }, worker));
  });
  return {
    count: latenciesMs.length,
    ms: m.wallMs,
    latenciesMs,
    clientCpuUs: m.clientCpuUs,
    serverCpuUs: m.serverCpuUs,
  };
}

function combine(phases: readonly Phase[]) {
  const count = phases.reduce((a, p) => a + p.count, 0);
  const ms = phases.reduce((a, p) => a + p.ms, 0);
  const lat = summarize(
    phases.flatMap((p) => p.latenciesMs),
    3,
  );
  return {
    perSecond: count / (ms / 1000),
    count,
    latencyMs: lat,
    clientCpuUsPerOp: Math.round(phases.reduce((a, p) => a + p.clientCpuUs, 0) / count),
    serverCpuUsPerOp: Math.round(phases.reduce((a, p) => a + p.serverCpuUs, 0) / count),
  };
}

export async function run(): Promise<ModuleReport> {
  const creds = await mintCreds();
  return withServer(creds, async (sp) => {
    const tlsPort = await sp.listen({ proto: 'tls', mode: 'hello' });
    const hbonePort = await sp.listen({ proto: 'hbone', mode: 'accept' });
    const dialTls = rawTlsDialer(creds);
    const dialHbone = hboneDialer(creds, SERVER_ID);

    const tlsOnce = async (): Promise<void> => {
      const s = await dialTls(tlsPort);
      await new Promise<void>((resolve, reject) => {
        s.once('data', () => resolve());
        s.once('error', reject);
        s.once('close', () => reject(new Error('closed before the first byte')));
      });
      s.destroy();
    };
    const hboneOnce = async (): Promise<void> => {
      const session = await dialHbone(hbonePort);
      await openTunnel(session);
      session.destroy();
    };

    for (let i = 0; i < 50; i++) {
      await tlsOnce();
      await hboneOnce();
    }
    const out: ModuleReport['results'] = [];
    for (const workers of [1, 4]) {
      const tls: Phase[] = [];
      const hbone: Phase[] = [];
      for (let p = 0; p < PHASES; p++) {
        // Alternate which goes first, so neither always runs on the warmer process.
        if (p % 2 === 1) hbone.push(await phase(sp, workers, hboneOnce));
        tls.push(await phase(sp, workers, tlsOnce));
        if (p % 2 === 0) hbone.push(await phase(sp, workers, hboneOnce));
      }
      const t = combine(tls);
      const h = combine(hbone);
      log(`concurrency ${workers}: tls ${t.perSecond.toFixed(0)}/s, hbone ${h.perSecond.toFixed(0)}/s`);
      out.push(
        result({
          name:
            workers === 1
              ? 'connect-first-tunnel-per-s-sequential'
              : `connect-first-tunnel-per-s-c${workers}`,
          value: h.perSecond,
          unit: '1/s',
          baseline: t.perSecond,
          baselineName: 'raw mutual TLS 1.3 handshakes (until the server first byte) per second',
          ratio: pairedRatio(
            hbone.map((p) => p.count / p.ms),
            tls.map((p) => p.count / p.ms),
          ),
          target: { of: 'ratio', op: '>=', value: 0.8, source: 'issue-3' },
          details: {
            concurrency: workers,
            phases: PHASES,
            ratioOfTotals: round(h.perSecond / t.perSecond),
            hbone: { ...h, perSecond: round(h.perSecond, 1) },
            tls: { ...t, perSecond: round(t.perSecond, 1) },
          },
        }),
      );
    }
    return { results: out };
  });
}
