/**
 * Prometheus metrics (`GET /metrics`): request counts and latencies per route pattern, stored
 * adapters and models, and online updates. One registry per app, so tests do not share counters.
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route' | 'status'>;
  /** Online updates applied, by optimizer type; incremented by the observe route. */
  readonly observes: Counter<'optimizer'>;
  /** Adapter states held in memory, and those evicted past the limit (services/online.ts). */
  readonly hotAdapters: Gauge;
  readonly evictions: Counter;
  /** Adapter engine builds (their training graphs and sessions), by result (services/engines.ts). */
  readonly engineBuilds: Counter<'result'>;

  constructor(counts: { adapters: () => Promise<number>; models: () => Promise<number> }) {
    const registers = [this.registry];
    this.httpRequests = new Counter({ name: 'http_requests_total', help: 'HTTP requests answered', labelNames: ['method', 'route', 'status'], registers });
    this.httpDuration = new Histogram({
      name: 'http_request_duration_seconds',
      help: 'HTTP request latency',
      labelNames: ['method', 'route', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers,
    });
    this.observes = new Counter({ name: 'adapter_observes_total', help: 'online updates applied (observe)', labelNames: ['optimizer'], registers });
    this.hotAdapters = new Gauge({ name: 'adapter_states_in_memory', help: 'adapter states held in memory', registers });
    this.evictions = new Counter({ name: 'adapter_state_evictions_total', help: 'adapter states dropped from memory past MAX_HOT_ADAPTERS (recovered on their next request)', registers });
    this.engineBuilds = new Counter({ name: 'engine_builds_total', help: 'adapter engines built (graphs and onnxruntime sessions), by result: ok or error', labelNames: ['result'], registers });
    new Gauge({
      name: 'adapters',
      help: 'stored adapters',
      registers,
      async collect() {
        this.set(await counts.adapters());
      },
    });
    new Gauge({
      name: 'base_models',
      help: 'registered base models',
      registers,
      async collect() {
        this.set(await counts.models());
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** Records one answered request; `route` is the route pattern (`/v1/adapters/:id`), never the raw URL. */
  observeRequest(method: string, route: string, status: number, seconds: number): void {
    const labels = { method, route, status: String(status) };
    this.httpRequests.inc(labels);
    this.httpDuration.observe(labels, seconds);
  }
}
