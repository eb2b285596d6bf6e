/**
 * Prometheus metrics with Istio's names (HBONE-WIRE.md "Observability"), served as text on
 * :15020 `/metrics` (and `/stats/prometheus`):
 * - `istio_tcp_connections_opened_total`, `istio_tcp_connections_closed_total`,
 *   `istio_tcp_received_bytes_total` (source -> destination bytes), `istio_tcp_sent_bytes_total`
 *   (destination -> source), `istio_tcp_connections_failed_total`; labels `reporter`, source and
 *   destination workload/namespace/principal/cluster, `destination_service`, `request_protocol`,
 *   `connection_security_policy` and `response_flags` (`-` when none).
 * - ours, for what Istio has no name for: `hbone_pool_connections` (live outbound HBONE
 *   connections), `hbone_pool_dials_total`, `hbone_pool_tunnels` (tunnels on them),
 *   `hbone_inbound_connections` (live inbound HBONE connections).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export type Labels = Readonly<Record<string, string>>;

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function labelText(labels: Labels): string {
  const keys = Object.keys(labels);
  if (keys.length === 0) return '';
  return `{${keys.map((k) => `${k}="${escapeLabel(labels[k] ?? '')}"`).join(',')}}`;
}

interface Family {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly series: Map<string, { labels: Labels; value: number }>;
  readonly collect?: () => ReadonlyArray<{ labels: Labels; value: number }>;
}

/** A small registry: counters you increment, gauges read when scraped. */
export class Metrics {
  readonly #families = new Map<string, Family>();

  counter(name: string, help: string): (labels: Labels, by?: number) => void {
    const f = this.#family(name, help, 'counter');
    return (labels, by = 1) => {
      const key = labelText(labels);
      const s = f.series.get(key);
      if (s) s.value += by;
      else f.series.set(key, { labels, value: by });
    };
  }

  /** A series read when scraped (`type` 'counter' for a total kept elsewhere). */
  gauge(
    name: string,
    help: string,
    collect: () => ReadonlyArray<{ labels: Labels; value: number }>,
    type: 'counter' | 'gauge' = 'gauge',
  ): void {
    this.#families.set(name, { name, help, type, series: new Map(), collect });
  }

  /** The current value of one series (0 when absent); a label subset matches every series it is part of, summed. */
  value(name: string, match: Labels = {}): number {
    const f = this.#families.get(name);
    if (!f) return 0;
    const series = f.collect ? f.collect() : [...f.series.values()];
    let sum = 0;
    for (const s of series) {
      if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) sum += s.value;
    }
    return sum;
  }

  /** Prometheus text exposition format 0.0.4. */
  render(): string {
    const out: string[] = [];
    for (const f of this.#families.values()) {
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      const series = f.collect ? f.collect() : [...f.series.values()];
      for (const s of series) out.push(`${f.name}${labelText(s.labels)} ${s.value}`);
    }
    return `${out.join('\n')}\n`;
  }

  #family(name: string, help: string, type: 'counter' | 'gauge'): Family {
    let f = this.#families.get(name);
    if (!f) {
      f = { name, help, type, series: new Map() };
      this.#families.set(name, f);
    }
    return f;
  }
}

/** Who talked to whom: the facts the `istio_tcp_*` labels are made of. */
export interface TcpLabelFacts {
  readonly reporter: 'source' | 'destination';
  readonly srcWorkload?: string;
  readonly srcNamespace?: string;
  readonly srcPrincipal?: string;
  readonly srcCluster?: string;
  readonly dstWorkload?: string;
  readonly dstNamespace?: string;
  readonly dstPrincipal?: string;
  readonly dstService?: string;
  readonly dstCluster?: string;
  /** mutual_tls for HBONE, none for plaintext. */
  readonly mtls: boolean;
}

export function tcpLabels(f: TcpLabelFacts, responseFlags = '-'): Labels {
  const u = (v: string | undefined): string => (v === undefined || v === '' ? 'unknown' : v);
  return {
    reporter: f.reporter,
    source_workload: u(f.srcWorkload),
    source_workload_namespace: u(f.srcNamespace),
    source_principal: u(f.srcPrincipal),
    source_cluster: u(f.srcCluster),
    destination_workload: u(f.dstWorkload),
    destination_workload_namespace: u(f.dstNamespace),
    destination_principal: u(f.dstPrincipal),
    destination_service: u(f.dstService),
    destination_cluster: u(f.dstCluster),
    request_protocol: 'tcp',
    connection_security_policy: f.mtls ? 'mutual_tls' : 'none',
    response_flags: responseFlags,
  };
}

/** The `istio_tcp_*` family, bound to one registry. */
export class TcpMetrics {
  readonly registry: Metrics;
  readonly #opened: (l: Labels, by?: number) => void;
  readonly #closed: (l: Labels, by?: number) => void;
  readonly #failed: (l: Labels, by?: number) => void;
  readonly #received: (l: Labels, by?: number) => void;
  readonly #sent: (l: Labels, by?: number) => void;

  constructor(registry: Metrics) {
    this.registry = registry;
    this.#opened = registry.counter('istio_tcp_connections_opened_total', 'TCP connections opened.');
    this.#closed = registry.counter('istio_tcp_connections_closed_total', 'TCP connections closed.');
    this.#failed = registry.counter(
      'istio_tcp_connections_failed_total',
      'TCP connections that failed, by response_flags.',
    );
    this.#received = registry.counter(
      'istio_tcp_received_bytes_total',
      'Bytes received by the destination (from the source) on TCP connections.',
    );
    this.#sent = registry.counter(
      'istio_tcp_sent_bytes_total',
      'Bytes sent by the destination (to the source) on TCP connections.',
    );
  }

  opened(f: TcpLabelFacts): void {
    this.#opened(tcpLabels(f));
  }

  /** A connection that had opened ends; bytes are source->destination and back. */
  closed(f: TcpLabelFacts, bytesToDst: number, bytesToSrc: number, responseFlags = '-'): void {
    const l = tcpLabels(f, responseFlags);
    this.#closed(l);
    if (bytesToDst > 0) this.#received(l, bytesToDst);
    if (bytesToSrc > 0) this.#sent(l, bytesToSrc);
  }

  failed(f: TcpLabelFacts, responseFlags: string): void {
    this.#failed(tcpLabels(f, responseFlags));
  }
}

/** An HTTP handler serving `render()` on /metrics and /stats/prometheus. */
export function metricsHandler(metrics: Metrics): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && (path === '/metrics' || path === '/stats/prometheus')) {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(metrics.render());
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /metrics\n');
  };
}
