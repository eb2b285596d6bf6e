/**
 * Benchmark 3: the 1-byte echo round trip on an open tunnel against the raw mutual TLS 1.3 echo
 * round trip (same certificates, TCP_NODELAY on both), in interleaved batches so drift hits both;
 * and the time to open a tunnel on a warm connection (CONNECT to 200). Bare node:http2 over the
 * same TLS is measured alongside as a second reference: what node:http2 itself costs, without
 * any HBONE code.
 */

import { performance } from 'node:perf_hooks';
import type { Duplex } from 'node:stream';
import type { HboneClientSession } from '../packages/hbone/src/index.js';
import { bareH2Dialer, closeStream, hboneDialer, openTunnel, rawTlsDialer } from './lib/clients.js';
import { mintCreds, SERVER_ID } from './lib/creds.js';
import { withServer } from './lib/peer.js';
import { log, type ModuleReport, pairedRatio, result, round } from './lib/result.js';
import { type Summary, summarize } from './lib/stats.js';
import { pingPong } from './lib/traffic.js';

const ROUND_TRIPS = 5_000;
const BATCH = 250;
const WARMUP = 500;
/** Per batch, whatever the count reached; the whole loop is bounded too. */
const BATCH_MAX_MS = 2_000;
const LOOP_MAX_MS = 30_000;
const OPENS = 2_000;
const OPEN_BATCH = 250;
const OPEN_WARMUP = 100;
/**
 * Opens per HBONE connection before a fresh (untimed) one is dialled. node's nghttp2 answers more
 * than 1000 RST_STREAMs on a connection (then 33/s) with GOAWAY(INTERNAL_ERROR); an HBONE build
 * that resets cleanly closed tunnels (as cc9116e's tunnel.ts did) would trip it mid-loop.
 */
const OPENS_PER_CONNECTION = 500;

export async function run(): Promise<ModuleReport> {
  const creds = await mintCreds();
  return withServer(creds, async (sp) => {
    const tlsPort = await sp.listen({ proto: 'tls', mode: 'echo' });
    const h2Port = await sp.listen({ proto: 'h2', mode: 'echo' });
    const hbonePort = await sp.listen({ proto: 'hbone', mode: 'echo' });
    const nativePort = await sp.listen({ proto: 'hbone', mode: 'echo', bufferWrites: false });
    const dialHbone = hboneDialer(creds, SERVER_ID);
    const socket = await rawTlsDialer(creds)(tlsPort);
    const bare = await bareH2Dialer(creds)(h2Port);
    const bareStream = await bare.open();
    let session = await dialHbone(hbonePort);
    const tunnel = await openTunnel(session);
    const nativeSession = await dialHbone(nativePort);
    const nativeTunnel = await openTunnel(nativeSession);

    const echoes: Array<[string, Duplex, number[], number[]]> = [
      ['tls', socket, [], []],
      ['h2', bareStream, [], []],
      ['hbone', tunnel, [], []],
      ['hboneNative', nativeTunnel, [], []],
    ];
    for (const [, s] of echoes) await pingPong(s, WARMUP, BATCH_MAX_MS);
    const t0 = performance.now();
    while (echoes[0]![2].length < ROUND_TRIPS && performance.now() - t0 < LOOP_MAX_MS) {
      for (const [, s, out, p50s] of echoes) {
        const batch = await pingPong(s, BATCH, BATCH_MAX_MS);
        out.push(...batch);
        p50s.push(summarize(batch).p50);
      }
    }
    for (const [, s] of echoes) await closeStream(s);
    // Batches ran back to back: the median of the per-batch p50 ratios is what outside load
    // disturbs least.
    const p50Ratio = pairedRatio(echoes[2]![3], echoes[0]![3]);
    nativeSession.destroy();
    const [rttTls, rttH2, rttHbone, rttNative] = echoes.map(([, , xs]) => summarize(xs)) as [
      Summary,
      Summary,
      Summary,
      Summary,
    ];
    log(`echo p50: tls ${rttTls.p50} us, bare h2 ${rttH2.p50} us, hbone ${rttHbone.p50} us`);

    // Tunnel opens on a warm connection, one at a time, each closed cleanly (END_STREAM both
    // ways, untimed) before the next; bare node:http2 CONNECTs interleaved in batches.
    let onSession = 0;
    const hboneOpen = async (): Promise<number> => {
      if (onSession >= OPENS_PER_CONNECTION) {
        const old: HboneClientSession = session;
        session = await dialHbone(hbonePort);
        old.destroy();
        onSession = 0;
      }
      onSession++;
      const a = performance.now();
      const t = await openTunnel(session);
      const us = (performance.now() - a) * 1000;
      await closeStream(t);
      return us;
    };
    const bareOpen = async (): Promise<number> => {
      const a = performance.now();
      const s = await bare.open();
      const us = (performance.now() - a) * 1000;
      await closeStream(s);
      return us;
    };
    for (let i = 0; i < OPEN_WARMUP; i++) {
      await hboneOpen();
      await bareOpen();
    }
    const opens: number[] = [];
    const bareOpens: number[] = [];
    const o0 = performance.now();
    while (opens.length < OPENS && performance.now() - o0 < LOOP_MAX_MS) {
      for (let i = 0; i < OPEN_BATCH; i++) opens.push(await hboneOpen());
      for (let i = 0; i < OPEN_BATCH; i++) bareOpens.push(await bareOpen());
    }
    const open = summarize(opens);
    const bareOpenUs = summarize(bareOpens);
    log(`tunnel open p50: hbone ${open.p50} us, bare h2 ${bareOpenUs.p50} us`);
    session.destroy();
    bare.close();

    const echoDetails = {
      roundTrips: rttHbone.n,
      batch: BATCH,
      hboneUs: rttHbone,
      tlsUs: rttTls,
      bareNodeHttp2Us: rttH2,
      hboneOverBareHttp2P50: round(pairedRatio(echoes[2]![3], echoes[1]![3])),
      bareHttp2OverTlsP50: round(pairedRatio(echoes[1]![3], echoes[0]![3])),
      hboneServerBufferWritesFalseUs: rttNative,
      hboneServerBufferWritesFalseOverTlsP50: round(pairedRatio(echoes[3]![3], echoes[0]![3])),
      p50RatioOfAllSamples: round(rttHbone.p50 / rttTls.p50),
    };
    const openDetails = {
      opens: open.n,
      hboneOpenUs: open,
      bareNodeHttp2OpenUs: bareOpenUs,
      tlsEchoRttUs: rttTls,
      opensPerConnection: OPENS_PER_CONNECTION,
      note: 'CONNECT -> 200 on an established connection; each tunnel closed (END_STREAM both ways) before the next, untimed',
    };
    return {
      results: [
        result({
          name: 'echo-rtt-p50',
          value: rttHbone.p50,
          unit: 'us',
          baseline: rttTls.p50,
          baselineName: 'raw mutual TLS 1.3 1-byte echo round trip, p50',
          ratio: p50Ratio,
          target: { of: 'ratio', op: '<=', value: 1.25, source: 'issue-3' },
          details: echoDetails,
        }),
        result({
          name: 'echo-rtt-p99',
          value: rttHbone.p99,
          unit: 'us',
          baseline: rttTls.p99,
          baselineName: 'raw mutual TLS 1.3 1-byte echo round trip, p99',
          target: { of: 'ratio', op: '<=', value: 1.25, source: 'issue-3' },
          details: echoDetails,
        }),
        result({
          name: 'tunnel-open-warm-p50',
          value: open.p50,
          unit: 'us',
          baseline: bareOpenUs.p50,
          baselineName: 'bare node:http2 CONNECT -> 200 over the same TLS, p50',
          target: null,
          details: openDetails,
        }),
        result({
          name: 'tunnel-open-warm-p99',
          value: open.p99,
          unit: 'us',
          baseline: bareOpenUs.p99,
          baselineName: 'bare node:http2 CONNECT -> 200 over the same TLS, p99',
          target: null,
          details: openDetails,
        }),
      ],
    };
  });
}
