/**
 * A per-connection cap on the payload bytes held for tunnels whose readers are behind.
 *
 * ztunnel's Rust h2 returns connection-window credit only as the application reads, so the
 * 16 MiB connection window caps what one connection can make it buffer. node:http2 returns
 * connection credit as DATA arrives (node_http2.cc `OnDataChunkReceived` calls
 * `nghttp2_session_consume_connection` at once); only stream credit waits for the reader. Left
 * alone, the stalled streams of one connection add up: 200 streams x 4 MiB = 800 MiB.
 *
 * The budget restores the bound with the one lever HTTP/2 leaves a receiver: the stream windows.
 * Each tunnel reports what it holds (its own buffer plus its Http2Stream's); when the connection
 * total passes `budgetBytes` we send SETTINGS_INITIAL_WINDOW_SIZE = 16 KiB, which
 * shrinks every stream window of the connection at once (RFC 9113 section 6.9.2: the peer
 * adjusts all of them by the difference; a stalled stream's window goes negative and it stops).
 * Streams whose readers keep up go on, in smaller steps. Once the total falls below half the
 * budget, the ztunnel window comes back the same way. The bound is soft: DATA the peer sent
 * before it read our SETTINGS still arrives (what its socket and ours had in flight: measured up
 * to ~16 MiB on loopback). A peer that sends far more than that before taking our SETTINGS is
 * bursting into windows it knows we are taking back; past `inboundHardLimit(budget)` (4 x the
 * budget, at least 48 MiB above it: 64 MiB by default) the connection is given up
 * (`onOverLimit`), so hostile peers are bounded too.
 *
 * One SETTINGS change is in flight at a time (we wait for its ACK), so a reader that hovers at
 * the threshold cannot make us flood the peer with SETTINGS.
 */
import type { Http2Session } from 'node:http2';
import { INITIAL_CONNECTION_WINDOW_BYTES, INITIAL_STREAM_WINDOW_BYTES } from './settings.js';

/** Default budget: ztunnel's connection window, 16 MiB (`src/proxy/h2/*.rs`). */
export const INBOUND_BUDGET_BYTES = INITIAL_CONNECTION_WINDOW_BYTES;

/**
 * The hard limit, as a multiple of the budget: 4 x 16 MiB = 64 MiB by default. Ours.
 */
export const INBOUND_HARD_LIMIT_FACTOR = 4;

/**
 * The least room the hard limit leaves above the budget: 48 MiB, for what an honest peer has in
 * flight when it reads our SETTINGS (a 1 Gbit/s path with a 400 ms RTT). Ours. Without it a small
 * budget (say 1 MiB) would give up honest peers whose one stream window alone is 4 MiB.
 */
export const INBOUND_MIN_HEADROOM_BYTES = 48 * 1024 * 1024;

/** Bytes held past which a connection is given up: max(4 x budget, budget + 48 MiB). */
export function inboundHardLimit(budgetBytes: number): number {
  return Math.max(budgetBytes * INBOUND_HARD_LIMIT_FACTOR, budgetBytes + INBOUND_MIN_HEADROOM_BYTES);
}

/**
 * Stream window while over budget: 16 KiB, the smallest SETTINGS_MAX_FRAME_SIZE (RFC 9113
 * section 6.5.2). Ours. Every stream opened while the budget is exceeded may still fill this much
 * before it stalls, so the bound is budget + streams x 16 KiB (+ what was in flight); reading
 * streams go on one 16 KiB window at a time until the total falls below half the budget.
 */
export const CLAMPED_STREAM_WINDOW_BYTES = 16 * 1024;

export interface InboundBudgetOptions {
  /** Bytes held across the connection's tunnels before stream windows shrink; 0 = no budget. */
  budgetBytes: number;
  /** Called once when the connection holds more than `inboundHardLimit(budgetBytes)`. */
  onOverLimit?: (heldBytes: number, limitBytes: number) => void;
}

/** What a tunnel reports to: the running total of bytes it holds. */
export interface InboundAccount {
  /** The tunnel now holds `bytes` (absolute; the account keeps the difference). */
  set(bytes: number): void;
}

export class InboundBudget {
  readonly #session: Http2Session;
  readonly #budget: number;
  readonly #hardLimit: number;
  readonly #onOverLimit: ((heldBytes: number, limitBytes: number) => void) | undefined;
  #held = 0;
  /** The stream window the peer was last told (or is being told): ours or the clamp. */
  #announced = INITIAL_STREAM_WINDOW_BYTES;
  /** A SETTINGS change awaits its ACK. */
  #inFlight = false;
  /** The hard limit was passed: the connection is being given up, nothing more to steer. */
  #gaveUp = false;

  constructor(session: Http2Session, opts: InboundBudgetOptions) {
    this.#session = session;
    this.#budget = opts.budgetBytes;
    this.#hardLimit = inboundHardLimit(opts.budgetBytes);
    this.#onOverLimit = opts.onOverLimit;
  }

  /** A new account, for one tunnel; `set(0)` when the tunnel is gone. */
  account(): InboundAccount {
    let mine = 0;
    return {
      set: (bytes: number): void => {
        if (bytes === mine) return;
        this.#held += bytes - mine;
        mine = bytes;
        this.#steer();
      },
    };
  }

  #steer(): void {
    if (this.#budget <= 0 || this.#gaveUp || this.#session.destroyed) return;
    if (this.#held > this.#hardLimit && this.#onOverLimit !== undefined) {
      this.#gaveUp = true;
      this.#onOverLimit(this.#held, this.#hardLimit);
      return;
    }
    if (this.#inFlight) return;
    let want = this.#announced;
    if (this.#held > this.#budget) want = CLAMPED_STREAM_WINDOW_BYTES;
    else if (this.#held < this.#budget / 2) want = INITIAL_STREAM_WINDOW_BYTES;
    if (want === this.#announced) return;
    this.#announced = want;
    this.#inFlight = true;
    try {
      this.#session.settings({ initialWindowSize: want }, () => {
        this.#inFlight = false;
        // The total moved while we waited for the ACK: steer again.
        this.#steer();
      });
    } catch {
      // The session is closing: nothing left to steer.
    }
  }
}
