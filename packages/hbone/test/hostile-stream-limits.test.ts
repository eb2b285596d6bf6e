/**
 * A peer that opens more streams than the server's SETTINGS_MAX_CONCURRENT_STREAMS. RFC 9113
 * 5.1.2 makes that a stream error (PROTOCOL_ERROR or REFUSED_STREAM); node 20's HTTP/2 escalates
 * nghttp2's PROTOCOL_ERROR to the whole connection: it resets the streams and closes the socket.
 * Either way the extra stream never reaches the handler, only the offender's connection suffers,
 * and a client that respects the limit is queued rather than refused.
 */
import {
  ErrorCode,
  FrameFlag,
  FrameType,
  memoryWatch,
  type RawH2Client,
  reportAttack,
  type StreamOutcome,
} from '@hbone/testkit';
import { describe, expect, it } from 'vitest';
import type { IncomingTunnel } from '../src/index.js';
import { readAll } from './fixtures.js';
import { echo, expectEcho, useHarness } from './harness.js';

const h = useHarness();

/** Holds CONNECTs to 10.0.0.9 unanswered; echoes everything else. */
async function holdingServer(maxConcurrentStreams?: number) {
  const held: IncomingTunnel[] = [];
  const { srv, port } = await h.server_(
    (t) => {
      if (t.authority.host === '10.0.0.9') {
        held.push(t);
        return;
      }
      echo(t);
    },
    { handlerTimeoutMs: 0, ...(maxConcurrentStreams === undefined ? {} : { maxConcurrentStreams }) },
  );
  return { srv, port, held };
}

/** The extra stream is refused (RFC 9113 5.1.2) or its whole connection is torn down (node 20). */
function expectRefusedOrTornDown(outcome: StreamOutcome, c: RawH2Client): void {
  if (outcome.kind === 'reset') {
    expect([ErrorCode.REFUSED_STREAM, ErrorCode.PROTOCOL_ERROR, ErrorCode.INTERNAL_ERROR]).toContain(
      outcome.code,
    );
  } else {
    expect(['closed', 'goaway']).toContain(outcome.kind);
    expect(c.isClosed || c.goaway !== undefined).toBe(true);
  }
}

describe('streams beyond SETTINGS_MAX_CONCURRENT_STREAMS', () => {
  it('limit 10: the 11th stream never reaches the handler; only the offending connection suffers', async () => {
    const { srv, port, held } = await holdingServer(10);
    const bystander = await h.connect(port);
    const c = await h.attacker(port);
    const settings = c.frames.find((f) => f.type === FrameType.SETTINGS && (f.flags & FrameFlag.ACK) === 0)!;
    expect(settings.payload.readUInt16BE(0)).toBe(3); // MAX_CONCURRENT_STREAMS first: 10
    expect(settings.payload.readUInt32BE(2)).toBe(10);
    for (let i = 0; i < 10; i++) c.connectRequest('10.0.0.9:80');
    await expect.poll(() => held.length).toBe(10);
    const extra = c.connectRequest('10.0.0.9:80');
    const outcome = await c.outcome(extra, 5_000);
    expectRefusedOrTornDown(outcome, c);
    reportAttack('11th stream with MAX_CONCURRENT_STREAMS 10', {
      outcome,
      connectionClosed: (await c.waitForClose(1_000)) !== undefined,
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(held).toHaveLength(10);
    // Another client's connection, opened before the attack, is untouched.
    await expectEcho(bystander, 'bystander');
    expect(srv.connections).toBeGreaterThanOrEqual(1);
    await h.expectStillServes(port);
  });

  it('the default limit (200): 200 held streams are fine, the 201st is refused, memory stays small', async () => {
    const { port, held } = await holdingServer();
    const c = await h.attacker(port);
    const mem = memoryWatch();
    for (let i = 0; i < 200; i++) c.connectRequest('10.0.0.9:80');
    await expect.poll(() => held.length, { timeout: 5_000 }).toBe(200);
    const growth = mem();
    expect(c.isClosed).toBe(false);
    const extra = c.connectRequest('10.0.0.9:80');
    expectRefusedOrTornDown(await c.outcome(extra, 5_000), c);
    reportAttack('201 streams on the default limit', { heldStreams: held.length, ...growth });
    expect(growth.heapUsedMiB).toBeLessThan(32);
    expect(held).toHaveLength(200);
    await h.expectStillServes(port);
  });

  it('positive control: a conforming client opening 60 tunnels at once against a limit of 10 is queued, not refused', async () => {
    const { port } = await holdingServer(10);
    const session = await h.connect(port);
    const started = Date.now();
    const echoed = await Promise.all(
      Array.from({ length: 60 }, async (_, i) => {
        const tunnel = await session.open({ authority: '10.0.0.1:80' });
        const back = readAll(tunnel);
        tunnel.end(`tunnel ${i}`);
        return (await back).toString();
      }),
    );
    expect(echoed).toEqual(Array.from({ length: 60 }, (_, i) => `tunnel ${i}`));
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
