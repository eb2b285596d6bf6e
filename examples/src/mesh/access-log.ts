/**
 * One JSON line per connection when it ends, with ztunnel's message and field names
 * (HBONE-WIRE.md "Observability"): "connection complete", `src.addr`, `src.identity`,
 * `dst.addr`, `dst.hbone_addr`, `dst.service`, `dst.identity`, `direction`, `bytes_sent`,
 * `bytes_recv`, `duration`, `error`; plus ztunnel's `src.workload`, `src.namespace`,
 * `dst.workload`, `dst.namespace`, and `component` (which proxy wrote it: one process runs several
 * here). Absent facts are omitted, as ztunnel does: a plaintext connection has no `src.identity`.
 *
 * `bytes_sent` counts bytes from the source towards the destination, `bytes_recv` the answer,
 * whichever side logs.
 */
import { EventEmitter } from 'node:events';

export interface Peer {
  readonly addr?: string;
  readonly identity?: string;
  readonly workload?: string;
  readonly namespace?: string;
}

export interface ConnectionRecord {
  readonly direction: 'inbound' | 'outbound';
  readonly src: Peer;
  readonly dst: Peer & { readonly hboneAddr?: string; readonly service?: string };
  readonly bytesSent: number;
  readonly bytesRecv: number;
  readonly durationMs: number;
  readonly error?: string;
}

/** The JSON object written for a record (what tests and the demo read back). */
export type AccessLogLine = Record<string, string | number>;

export interface AccessLogOptions {
  /** Written into every line. */
  readonly component: string;
  /** Where lines go; default: none (kept in memory only). `process.stdout` for a command. */
  readonly write?: (line: string) => void;
  /** How many lines to keep in memory for `entries` (a ring). Default 1000. */
  readonly keep?: number;
}

export function formatRecord(component: string, r: ConnectionRecord, now = new Date()): AccessLogLine {
  const line: AccessLogLine = {
    time: now.toISOString(),
    level: r.error ? 'error' : 'info',
    scope: 'access',
    message: 'connection complete',
    component,
  };
  const put = (k: string, v: string | number | undefined): void => {
    if (v !== undefined && v !== '') line[k] = v;
  };
  put('src.addr', r.src.addr);
  put('src.workload', r.src.workload);
  put('src.namespace', r.src.namespace);
  put('src.identity', r.src.identity);
  put('dst.addr', r.dst.addr);
  put('dst.hbone_addr', r.dst.hboneAddr);
  put('dst.service', r.dst.service);
  put('dst.workload', r.dst.workload);
  put('dst.namespace', r.dst.namespace);
  put('dst.identity', r.dst.identity);
  put('direction', r.direction);
  put('bytes_sent', r.bytesSent);
  put('bytes_recv', r.bytesRecv);
  put('duration', `${Math.round(r.durationMs)}ms`);
  put('error', r.error);
  return line;
}

/** Events: 'entry' (AccessLogLine). */
export class AccessLog extends EventEmitter {
  readonly component: string;
  readonly #write: ((line: string) => void) | undefined;
  readonly #keep: number;
  readonly #entries: AccessLogLine[] = [];

  constructor(opts: AccessLogOptions) {
    super();
    this.component = opts.component;
    this.#write = opts.write;
    this.#keep = opts.keep ?? 1000;
  }

  /** The most recent lines, oldest first. */
  get entries(): readonly AccessLogLine[] {
    return this.#entries;
  }

  record(r: ConnectionRecord): AccessLogLine {
    const line = formatRecord(this.component, r);
    this.#entries.push(line);
    if (this.#entries.length > this.#keep) this.#entries.shift();
    this.#write?.(`${JSON.stringify(line)}\n`);
    this.emit('entry', line);
    return line;
  }
}
