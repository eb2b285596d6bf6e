/**
 * `hbone load`: iperf for HBONE. One connection, K concurrent tunnels; each sends N pseudo-random
 * bytes (an AES-128-CTR keystream, so nothing is held in memory and the check can regenerate it),
 * half-closes, reads the echo back and compares it byte for byte as it arrives. Prints one JSON
 * summary; exits 0 only if every tunnel got back exactly what it sent.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { once, setMaxListeners } from 'node:events';
import type { HboneClientSession, HboneTunnel, TunnelRequest } from '@hbone/hbone';
import {
  CliError,
  type CommandSpec,
  type ParsedArgs,
  parseCount,
  parseDurationMs,
  parseSize,
  required,
  UsageError,
} from './args.js';
import { clientFlags, dialFromArgs } from './connect.js';
import { closeWithin, errorCode, errorLine, errorMessage, warn } from './output.js';

export const MAX_STREAMS = 10_000;
/** Per tunnel. */
export const MAX_BYTES = 2 ** 40;
const CHUNK = 64 * 1024;

export const loadSpec: CommandSpec = {
  name: 'load',
  summary:
    'Measure and verify HBONE: on one connection, open K tunnels at once; each sends N pseudo-random bytes,\nhalf-closes, and checks byte for byte that the echo it reads back is what it sent. The server must echo\n(hbone serve --echo, or --forward to an echo service). Prints one JSON summary; exit 0 only if all verified.',
  flags: {
    ...clientFlags,
    streams: { type: 'string', required: true, value: 'K', help: `concurrent tunnels, 1..${MAX_STREAMS}` },
    bytes: {
      type: 'string',
      required: true,
      value: 'N',
      help: 'bytes each tunnel sends, e.g. 65536, 64KiB, 1MiB (binary units)',
    },
    window: {
      type: 'string',
      value: 'BYTES',
      help: 'most bytes sent but not yet echoed back, over all tunnels (default 2MiB; see below)',
    },
    deadline: {
      type: 'string',
      value: 'DURATION',
      help: 'give up on tunnels not done after this long (default 60s)',
    },
  },
  details: [
    'Summary (stdout, one JSON object):',
    '  {"ok","to","authority","peer","streams","bytesPerStream","tunnels":{"ok","failed"},',
    '   "bytes":{"sent","received","verified"},"seconds","mbPerSecond","handshakeMs","errors":[...]}',
    'seconds: from the first CONNECT to the last tunnel done (the handshake is handshakeMs);',
    'mbPerSecond: (sent + received) / seconds / 10^6, both directions counted.',
    '',
    '--window bounds the echo data in flight on the connection. node:http2 stops reading its socket',
    "while one of its writes is pending; with HBONE's 16 MiB connection window, two node peers that both",
    'push more than the TCP buffers hold can each wait for the other forever. The window keeps the',
    'run inside what the buffers hold.',
    '',
    'Example:',
    '  pnpm hbone load --to 127.0.0.1:15008 --authority 127.0.0.1:15008 --cert client/cert.pem \\',
    '    --key client/key.pem --bundle ca/bundle.pem --expect spiffe://example.org/ns/default/sa/web \\',
    '    --streams 10 --bytes 1MiB',
  ].join('\n'),
};

/**
 * A byte budget shared by the tunnels of a run: a tunnel may send a chunk only while the bytes
 * sent and not yet echoed, over all tunnels, stay within `limit` (or none are in flight).
 */
export class Window {
  #inFlight = 0;
  readonly #limit: number;
  readonly #waiters: Array<{ n: number; go: () => void }> = [];

  constructor(limit: number) {
    this.#limit = limit;
  }

  /** Resolves when `n` more bytes may be sent (FIFO, so every tunnel gets its turn). */
  acquire(n: number): Promise<void> | undefined {
    if (this.#waiters.length === 0 && this.#fits(n)) {
      this.#inFlight += n;
      return undefined;
    }
    return new Promise((go) => this.#waiters.push({ n, go }));
  }

  /** `n` bytes came back (or will never come: a failed tunnel gives back what it holds). */
  release(n: number): void {
    this.#inFlight -= n;
    while (this.#waiters.length > 0 && this.#fits(this.#waiters[0]!.n)) {
      const w = this.#waiters.shift()!;
      this.#inFlight += w.n;
      w.go();
    }
  }

  #fits(n: number): boolean {
    return this.#inFlight === 0 || this.#inFlight + n <= this.#limit;
  }
}

interface TunnelOutcome {
  ok: boolean;
  sent: number;
  received: number;
  verified: number;
  error?: { tunnel: number; code: string; message: string };
}

/** One tunnel of the run: send the keystream, end, verify the echo as it comes. */
async function runTunnel(
  index: number,
  session: HboneClientSession,
  request: TunnelRequest,
  n: number,
  window: Window,
  signal: AbortSignal,
): Promise<TunnelOutcome> {
  const key = randomBytes(16);
  const iv = randomBytes(16);
  const source = createCipheriv('aes-128-ctr', key, iv);
  const expected = createCipheriv('aes-128-ctr', key, iv);
  let zeros = Buffer.alloc(CHUNK);
  const out: TunnelOutcome = { ok: false, sent: 0, received: 0, verified: 0 };
  let tunnel: HboneTunnel | undefined;
  const onAbort = (): void => {
    tunnel?.destroy(new CliError('ERR_LOAD_DEADLINE', 'the tunnel was not done before --deadline'));
  };
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    tunnel = await session.open(request, { signal });
    const t = tunnel;
    if (signal.aborted) onAbort();
    const verify = new Promise<void>((resolve, reject) => {
      t.on('data', (chunk: Buffer) => {
        out.received += chunk.length;
        if (out.received > n) {
          t.destroy(
            new CliError('ERR_LOAD_MISMATCH', `received ${out.received} bytes, more than the ${n} sent`),
          );
          return;
        }
        if (chunk.length > zeros.length) zeros = Buffer.alloc(chunk.length);
        const want = expected.update(zeros.subarray(0, chunk.length));
        if (!want.equals(chunk)) {
          let at = 0;
          while (at < chunk.length && chunk[at] === want[at]) at++;
          t.destroy(
            new CliError(
              'ERR_LOAD_MISMATCH',
              `the echo differs from what was sent at byte ${out.verified + at}`,
            ),
          );
          return;
        }
        out.verified += chunk.length;
        window.release(chunk.length);
      });
      t.once('end', () => {
        if (out.verified === n) resolve();
        else reject(new CliError('ERR_LOAD_MISMATCH', `the echo ended after ${out.verified} of ${n} bytes`));
      });
      t.once('error', reject);
    });
    verify.catch(() => {}); // awaited below; an early failure must not be "unhandled" meanwhile
    const aborted = new Promise<void>((resolve) =>
      signal.addEventListener('abort', () => resolve(), { once: true }),
    );
    while (out.sent < n) {
      const len = Math.min(CHUNK, n - out.sent);
      const wait = window.acquire(len);
      if (wait) {
        const granted = await Promise.race([
          wait.then(() => true),
          verify.then(
            () => false,
            () => false,
          ),
          aborted.then(() => false),
        ]);
        if (!granted) {
          // Still queued: hand the budget back as soon as the queue reaches us.
          void wait.then(() => window.release(len));
          break;
        }
      }
      if (t.destroyed) {
        window.release(len);
        break;
      }
      const chunk = source.update(zeros.subarray(0, len));
      out.sent += len;
      if (!t.write(chunk)) await Promise.race([once(t, 'drain'), verify]);
      if (t.destroyed) break;
    }
    t.end();
    await verify;
    out.ok = true;
  } catch (err) {
    tunnel?.destroy();
    out.error = { tunnel: index, code: errorCode(err), message: errorMessage(err) };
  } finally {
    signal.removeEventListener('abort', onAbort);
    // What this tunnel sent and will never see echoed goes back to the others.
    window.release(out.sent - out.verified);
  }
  return out;
}

export async function runLoad(args: ParsedArgs): Promise<number> {
  const streams = parseCount('streams', required(args, 'streams'), MAX_STREAMS);
  const n = parseSize('bytes', required(args, 'bytes'), MAX_BYTES);
  const deadline = args.strings.get('deadline');
  const deadlineMs = deadline === undefined ? 60_000 : parseDurationMs('deadline', deadline);
  const windowArg = args.strings.get('window');
  const windowBytes = windowArg === undefined ? 2 * 1024 * 1024 : parseSize('window', windowArg, 2 ** 32);
  if (windowBytes < CHUNK) throw new UsageError(`--window must be at least ${CHUNK} bytes`);
  const summary = {
    ok: false,
    to: required(args, 'to'),
    authority: required(args, 'authority'),
    peer: null as string | null,
    streams,
    bytesPerStream: n,
    tunnels: { ok: 0, failed: streams },
    bytes: { sent: 0, received: 0, verified: 0 },
    seconds: 0,
    mbPerSecond: 0,
    handshakeMs: null as number | null,
    errors: [] as Array<{ tunnel?: number; code: string; message: string }>,
  };
  const print = (): void => {
    process.stdout.write(`${JSON.stringify(summary)}\n`);
  };
  let setup: Awaited<ReturnType<typeof dialFromArgs>>;
  try {
    // Our own cap on streams per connection must not be what limits the run.
    setup = await dialFromArgs('load', args, { maxStreams: Math.max(streams, 100) });
  } catch (err) {
    if (err instanceof CliError && err.code === 'ERR_USAGE') throw err;
    summary.errors.push({ code: errorCode(err), message: errorMessage(err) });
    print();
    throw err;
  }
  const { session } = setup;
  summary.peer = session.peerIdentity.toString();
  summary.handshakeMs = round(setup.handshakeMs, 2);

  const controller = new AbortController();
  // Every tunnel listens for the deadline: more than node's default of 10 listeners is expected.
  setMaxListeners(2 * streams + 10, controller.signal);
  const window = new Window(windowBytes);
  const timer = setTimeout(() => controller.abort(), deadlineMs);
  const started = performance.now();
  let outcomes: TunnelOutcome[];
  try {
    outcomes = await Promise.all(
      Array.from({ length: streams }, (_, i) =>
        runTunnel(i, session, setup.request, n, window, controller.signal),
      ),
    );
  } finally {
    clearTimeout(timer);
  }
  const seconds = (performance.now() - started) / 1000;
  await closeWithin(session, 2_000);
  session.destroy();

  for (const o of outcomes) {
    summary.bytes.sent += o.sent;
    summary.bytes.received += o.received;
    summary.bytes.verified += o.verified;
    if (o.ok) summary.tunnels.ok++;
    else if (o.error && summary.errors.length < 10) summary.errors.push(o.error);
  }
  summary.tunnels.failed = streams - summary.tunnels.ok;
  summary.ok = summary.tunnels.failed === 0;
  summary.seconds = round(seconds, 4);
  summary.mbPerSecond =
    seconds > 0 ? round((summary.bytes.sent + summary.bytes.received) / seconds / 1e6, 2) : 0;
  print();
  if (!summary.ok) {
    const first = summary.errors[0];
    warn(
      errorLine(
        'load',
        new CliError(
          first?.code ?? 'ERR_LOAD_FAILED',
          `${summary.tunnels.failed} of ${streams} tunnels failed${first ? `; tunnel ${first.tunnel}: ${first.message}` : ''}`,
        ),
      ),
    );
    return 1;
  }
  return 0;
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
