/**
 * The inbound budget's arithmetic. Its behaviour on the wire is tested with real connections in
 * load-backpressure.test.ts, hostile-flow-control.test.ts and hostile-server-answers.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  INBOUND_BUDGET_BYTES,
  INBOUND_HARD_LIMIT_FACTOR,
  INBOUND_MIN_HEADROOM_BYTES,
  INITIAL_STREAM_WINDOW_BYTES,
  inboundHardLimit,
} from '../src/index.js';

describe('inboundHardLimit', () => {
  it('is 64 MiB for the default 16 MiB budget', () => {
    expect(inboundHardLimit(INBOUND_BUDGET_BYTES)).toBe(64 * 1024 * 1024);
  });

  it('is 4 x the budget, and never less than 48 MiB above it', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (budget) => {
        const limit = inboundHardLimit(budget);
        expect(limit).toBeGreaterThanOrEqual(budget * INBOUND_HARD_LIMIT_FACTOR);
        expect(limit).toBeGreaterThanOrEqual(budget + INBOUND_MIN_HEADROOM_BYTES);
        expect([budget * INBOUND_HARD_LIMIT_FACTOR, budget + INBOUND_MIN_HEADROOM_BYTES]).toContain(limit);
      }),
    );
  });

  it('leaves a small budget room for what honest peers have in flight (several 4 MiB windows)', () => {
    expect(inboundHardLimit(1024 * 1024) - 1024 * 1024).toBeGreaterThanOrEqual(
      12 * INITIAL_STREAM_WINDOW_BYTES,
    );
  });
});
