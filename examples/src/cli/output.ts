/**
 * How the `hbone` command talks: results on stdout, and every problem as one readable line on
 * stderr that starts with the command and the error's stable `code`, e.g.
 * `hbone connect: ERR_HBONE_IDENTITY_MISMATCH: peer identity rejected: ...`.
 */

/** The stable code of any error: ours, the hbone/spiffe packages', or node's (`ECONNREFUSED`). */
export function errorCode(err: unknown): string {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' && code !== '' ? code : 'ERR_UNEXPECTED';
}

/** The message on one line: newlines folded, and the cause appended when it adds something. */
export function errorMessage(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  const cause = err instanceof Error ? err.cause : undefined;
  const causeMsg = cause instanceof Error ? cause.message : undefined;
  const text = causeMsg && !msg.includes(causeMsg) ? `${msg} (${causeMsg})` : msg;
  return text.replace(/\s*\n\s*/g, ' ').trim();
}

/** `hbone <command>: <CODE>: <message>` */
export function errorLine(command: string, err: unknown): string {
  return `hbone ${command}: ${errorCode(err)}: ${errorMessage(err)}`;
}

/** Writes one line to stderr. */
export function warn(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** Resolves once everything written to `stream` so far has been handed to the OS (or failed). */
export function flushed(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise((resolve) => {
    try {
      stream.write('', () => resolve());
    } catch {
      resolve();
    }
  });
}

/**
 * Closes an HBONE session gracefully, waiting at most `ms`. The timer is referenced on purpose:
 * if the close never completes, the wait must still end (an unreferenced timer would let node
 * exit mid-await with status 13 instead).
 */
export async function closeWithin(session: { close(): Promise<void> }, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    session.close().catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}
