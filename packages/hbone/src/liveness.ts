import type { Http2Session } from 'node:http2';
import { PING_INTERVAL_MS, PING_TIMEOUT_MS } from './settings.js';

export interface LivenessOptions {
  /** Time between PINGs (and before the first). ztunnel: 10 s. 0 disables liveness. */
  intervalMs?: number;
  /** A PING not acknowledged within this time fails the connection. ztunnel: 20 s. */
  timeoutMs?: number;
}

/**
 * PING liveness as ztunnel runs it (`src/proxy/h2.rs`): a PING every interval; one unanswered
 * for `timeoutMs` means the peer is gone even though TCP has not noticed (a silently dropped
 * path, a frozen process). One `unref()`ed timer per session; stopped on the session's close.
 * Returns the stop function (idempotent).
 */
export function startLiveness(
  session: Http2Session,
  onDead: (reason: string) => void,
  opts: LivenessOptions = {},
): () => void {
  const intervalMs = opts.intervalMs ?? PING_INTERVAL_MS;
  const timeoutMs = opts.timeoutMs ?? PING_TIMEOUT_MS;
  if (intervalMs <= 0) return () => {};
  let outstandingSince = 0;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;

  const stop = (): void => {
    stopped = true;
    if (timer !== undefined) clearTimeout(timer);
    timer = undefined;
  };

  const tick = (): void => {
    timer = undefined;
    if (stopped || session.destroyed || session.closed) {
      stop();
      return;
    }
    const now = Date.now();
    if (outstandingSince !== 0) {
      if (now - outstandingSince >= timeoutMs) {
        stop();
        onDead(`no PING acknowledgement within ${timeoutMs} ms`);
        return;
      }
    } else {
      outstandingSince = now;
      const sent = session.ping((err) => {
        if (!err) outstandingSince = 0;
      });
      if (!sent) outstandingSince = 0;
    }
    schedule(outstandingSince !== 0 ? Math.min(intervalMs, timeoutMs) : intervalMs);
  };

  const schedule = (ms: number): void => {
    if (stopped) return;
    timer = setTimeout(tick, ms);
    timer.unref();
  };

  session.once('close', stop);
  schedule(intervalMs);
  return stop;
}
