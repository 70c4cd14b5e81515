import { CloseCode, ErrorCode, HOST_RUN_STATES, ROLLOUT_STATES } from '@fleetpatch/shared';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { UpgradeCap } from '../hub/upgrade-gate.js';

/** How a wave ended, as its phase in the status says: passed, failed (the rollout halted in it), or stopped. */
export type WaveOutcome = 'passed' | 'failed' | 'stopped';

/** What the gauges read when scraped: live numbers, never a copy that could go stale. */
export interface MetricSources {
  agentsConnected(): number;
  rolloutsByState(): Promise<ReadonlyMap<string, number>>;
  ordersByState(): Promise<ReadonlyMap<string, number>>;
}

/** Seconds, from a fast host run (a file on loopback) to a slow one (a dpkg upgrade waiting on a lock). */
const HOST_BUCKETS = [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800];
/** A wave's hosts, from the canary alone to a large wave at its parallelism. */
const WAVE_BUCKETS = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200];
/** An IMMEDIATE transaction with `synchronous = FULL`: one fsync or two on a healthy disk. */
const TRANSACTION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
const HTTP_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const KNOWN_ERROR_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));
const KNOWN_CLOSE_CODES: ReadonlySet<number> = new Set(Object.values(CloseCode));
const HTTP_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/**
 * Every metric of the coordinator, in one registry of its own (one per app, so tests that build
 * several apps never share counters). Label values come from closed sets only — states, error
 * codes, close codes, message types, route patterns — and anything else a peer could choose is
 * folded into `other`: a hostile agent or client cannot grow the number of series. No label names a
 * host, an agent or a rollout; those are in the API and the audit trail.
 */
export class CoordinatorMetrics {
  /** What `/metrics` serves: this app's metrics and the process's. */
  readonly registry: Registry;
  private readonly waveDuration: Histogram<'outcome'>;
  private readonly hostDuration: Histogram<'outcome'>;
  private readonly hostFailures: Counter<'code'>;
  private readonly wsMessages: Counter<'direction' | 'type'>;
  private readonly wsErrors: Counter<'code'>;
  private readonly wsCloses: Counter<'code'>;
  private readonly upgradesRefused: Counter<'cap'>;
  private readonly reportsDropped: Counter<'kind'>;
  private readonly transactionDuration: Histogram<'outcome'>;
  private readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  private readonly httpDuration: Histogram<'method' | 'route'>;

  constructor(sources: MetricSources, version: string) {
    const own = new Registry();
    const registers = [own];
    new Gauge({
      name: 'fleetpatch_build_info',
      help: 'Always 1; the labels say which coordinator and which Node run.',
      labelNames: ['version', 'node_version'],
      registers,
    }).set({ version, node_version: process.version }, 1);
    new Gauge({
      name: 'fleetpatch_agents_connected',
      help: 'Agents with a live, authenticated connection to this coordinator.',
      registers,
      collect() {
        this.set(sources.agentsConnected());
      },
    });
    new Gauge({
      name: 'fleetpatch_rollouts',
      help: 'Rollouts in each state.',
      labelNames: ['state'],
      registers,
      async collect() {
        setEach(this, ROLLOUT_STATES, await sources.rolloutsByState());
      },
    });
    new Gauge({
      name: 'fleetpatch_orders',
      help: 'Host runs (one order to one host in one rollout) in each state, over every rollout.',
      labelNames: ['state'],
      registers,
      async collect() {
        setEach(this, HOST_RUN_STATES, await sources.ordersByState());
      },
    });
    this.waveDuration = new Histogram({
      name: 'fleetpatch_wave_duration_seconds',
      help: 'From a wave starting to every host in it done (the bake after it not included).',
      labelNames: ['outcome'],
      buckets: WAVE_BUCKETS,
      registers,
    });
    this.hostDuration = new Histogram({
      name: 'fleetpatch_host_duration_seconds',
      help: 'From an order sent to a host to the host done applying it, by where it ended.',
      labelNames: ['outcome'],
      buckets: HOST_BUCKETS,
      registers,
    });
    this.hostFailures = new Counter({
      name: 'fleetpatch_host_failures_total',
      help: 'Host runs that ended failed, timed out or failed to revert, by error code.',
      labelNames: ['code'],
      registers,
    });
    this.wsMessages = new Counter({
      name: 'fleetpatch_websocket_messages_total',
      help: 'Protocol messages on agent sockets, by direction and message type (invalid: a frame refused).',
      labelNames: ['direction', 'type'],
      registers,
    });
    this.wsErrors = new Counter({
      name: 'fleetpatch_websocket_errors_total',
      help: 'Agent socket errors (broken framing, bad UTF-8, a frame over the size limit), by ws error code.',
      labelNames: ['code'],
      registers,
    });
    this.wsCloses = new Counter({
      name: 'fleetpatch_websocket_closes_total',
      help: 'Agent sockets closed, by WebSocket close code (1006: dropped without a close frame).',
      labelNames: ['code'],
      registers,
    });
    this.upgradesRefused = new Counter({
      name: 'fleetpatch_agent_upgrades_refused_total',
      help: 'Agent socket upgrades answered 503 at a cap on unauthenticated sockets (agentLimits), by cap: per_address or pending; and pending sockets destroyed for the bytes they sent: bytes_per_address or bytes.',
      labelNames: ['cap'],
      registers,
    });
    this.reportsDropped = new Counter({
      name: 'fleetpatch_agent_reports_dropped_total',
      help: 'Agent reports dropped unacknowledged after the store refused them on their own three times (the agent reports them again when it reconnects), by kind: hello, progress or result.',
      labelNames: ['kind'],
      registers,
    });
    this.transactionDuration = new Histogram({
      name: 'fleetpatch_sqlite_transaction_duration_seconds',
      help: 'SQLite write transactions (each one a state change on disk), committed or rolled back.',
      labelNames: ['outcome'],
      buckets: TRANSACTION_BUCKETS,
      registers,
    });
    this.httpRequests = new Counter({
      name: 'fleetpatch_http_requests_total',
      help: 'HTTP API requests answered, by method, route pattern and status.',
      labelNames: ['method', 'route', 'status'],
      registers,
    });
    this.httpDuration = new Histogram({
      name: 'fleetpatch_http_request_duration_seconds',
      help: 'Time to answer an HTTP API request (an event stream: how long it stayed open).',
      labelNames: ['method', 'route'],
      buckets: HTTP_BUCKETS,
      registers,
    });
    this.registry = Registry.merge([processRegistry(), own]);
  }

  waveFinished(outcome: WaveOutcome, seconds: number): void {
    this.waveDuration.observe({ outcome }, seconds);
  }

  hostFinished(outcome: string, seconds: number): void {
    this.hostDuration.observe({ outcome }, seconds);
  }

  hostFailed(errorCode: string | null): void {
    this.hostFailures.inc({ code: errorCode === null ? 'none' : knownOr(KNOWN_ERROR_CODES, errorCode) });
  }

  /** `type` is a message type the protocol schema accepted, or `invalid` / `unknown`. */
  messageReceived(type: string): void {
    this.wsMessages.inc({ direction: 'received', type });
  }

  messageSent(type: string): void {
    this.wsMessages.inc({ direction: 'sent', type });
  }

  socketError(code: string | undefined): void {
    this.wsErrors.inc({ code: code !== undefined && /^WS_ERR_[A-Z0-9_]{1,40}$/.test(code) ? code : 'other' });
  }

  socketClosed(code: number): void {
    const known = KNOWN_CLOSE_CODES.has(code) || code === 1005 || code === 1006;
    this.wsCloses.inc({ code: known ? String(code) : 'other' });
  }

  upgradeRefused(cap: UpgradeCap): void {
    this.upgradesRefused.inc({ cap });
  }

  reportDropped(kind: 'hello' | 'progress' | 'result'): void {
    this.reportsDropped.inc({ kind });
  }

  transactionFinished(seconds: number, committed: boolean): void {
    this.transactionDuration.observe({ outcome: committed ? 'committed' : 'rolled_back' }, seconds);
  }

  /** `route` is the matched route's pattern (`/v1/rollouts/:id`), or undefined when none matched. */
  requestAnswered(method: string, route: string | undefined, status: number, seconds: number): void {
    const labels = { method: HTTP_METHODS.has(method) ? method : 'other', route: route ?? 'unmatched' };
    this.httpRequests.inc({ ...labels, status: String(status) });
    this.httpDuration.observe(labels, seconds);
  }
}

let processMetrics: Registry | undefined;

/**
 * Node's process metrics (CPU, memory, event loop lag, GC), collected once per process: they watch
 * the process through perf_hooks observers that are never released, so every app built in it (tests
 * build many) shares the one set rather than adding its own.
 */
function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics });
  }
  return processMetrics;
}

/** Every state gets a series, 0 included: a dashboard's "halted" panel reads 0, not "no data". */
function setEach(gauge: Gauge<'state'>, states: readonly string[], counts: ReadonlyMap<string, number>): void {
  for (const state of states) gauge.set({ state }, counts.get(state) ?? 0);
}

function knownOr(known: ReadonlySet<string>, value: string): string {
  return known.has(value) ? value : 'other';
}
