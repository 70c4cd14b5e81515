import type { OrderResultBody } from '@fleetpatch/shared';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

export type OrderKind = 'apply' | 'revert' | 'preflight';

/** Seconds, from a file written on the spot to a dpkg upgrade that waited on the lock and baked. */
const ORDER_BUCKETS = [0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600];
/** Orders remembered between their arrival and their result; beyond, the oldest is measured as `recovered`. */
const MAX_IN_FLIGHT = 1000;

/**
 * The agent's own metrics, for node_exporter's textfile collector. Every name is `fleetpatch_agent_…`,
 * Node's process metrics included: node_exporter exposes its own `process_…`, and a textfile metric
 * with the same name as one of its own would be refused. Labels come from closed sets (order kind,
 * outcome, error code); this file is read on the host it describes, so it names no host either.
 */
export class AgentMetrics {
  /** What the textfile holds: this agent's metrics and the process's. */
  readonly registry: Registry;
  private readonly orders: Counter<'kind' | 'outcome'>;
  private readonly orderErrors: Counter<'code'>;
  private readonly orderDuration: Histogram<'kind' | 'outcome'>;
  private readonly started = new Map<string, { kind: OrderKind; at: number }>();

  constructor(version: string, connected: () => boolean) {
    const own = new Registry();
    const registers = [own];
    new Gauge({
      name: 'fleetpatch_agent_build_info',
      help: 'Always 1; the labels say which agent and which Node run.',
      labelNames: ['version', 'node_version'],
      registers,
    }).set({ version, node_version: process.version }, 1);
    new Gauge({
      name: 'fleetpatch_agent_connected',
      help: '1 while the agent has a live connection to its coordinator.',
      registers,
      collect() {
        this.set(connected() ? 1 : 0);
      },
    });
    this.orders = new Counter({
      name: 'fleetpatch_agent_orders_total',
      help: 'Orders this agent finished since it started, by kind and outcome.',
      labelNames: ['kind', 'outcome'],
      registers,
    });
    this.orderErrors = new Counter({
      name: 'fleetpatch_agent_order_errors_total',
      help: 'Orders that ended with an error, by error code (policy_denied and tampered among them).',
      labelNames: ['code'],
      registers,
    });
    this.orderDuration = new Histogram({
      name: 'fleetpatch_agent_order_duration_seconds',
      help: 'From an order arriving to its result, by kind and outcome (health checks and bake included).',
      labelNames: ['kind', 'outcome'],
      buckets: ORDER_BUCKETS,
      registers,
    });
    this.registry = Registry.merge([processRegistry(), own]);
  }

  orderReceived(orderId: string, kind: OrderKind, now: number): void {
    if (this.started.size >= MAX_IN_FLIGHT) {
      const oldest = this.started.keys().next().value;
      if (oldest !== undefined) this.started.delete(oldest);
    }
    this.started.set(orderId, { kind, at: now });
  }

  /** A result sent; an order recovered from the journal after a restart has no arrival time here. */
  orderFinished(result: OrderResultBody, now: number): void {
    const started = this.started.get(result.orderId);
    this.started.delete(result.orderId);
    const kind = started?.kind ?? 'recovered';
    this.orders.inc({ kind, outcome: result.outcome });
    if (result.errorCode) this.orderErrors.inc({ code: result.errorCode });
    if (started) this.orderDuration.observe({ kind, outcome: result.outcome }, Math.max(0, now - started.at) / 1000);
  }
}

let processMetrics: Registry | undefined;

/**
 * Node's process metrics, collected once per process (perf_hooks observers are never released, and
 * a load test runs many agents in one process): every agent's registry shares the one set.
 */
function processRegistry(): Registry {
  if (!processMetrics) {
    processMetrics = new Registry();
    collectDefaultMetrics({ register: processMetrics, prefix: 'fleetpatch_agent_' });
  }
  return processMetrics;
}
