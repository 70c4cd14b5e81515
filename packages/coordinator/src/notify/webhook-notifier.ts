import { createHmac, randomUUID } from 'node:crypto';
import { abortAfter, type Clock, FleetError, systemClock } from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { webhookEndpointLabel, webhookErrorText } from './webhook-endpoint-label.js';

export interface WebhookEndpoint {
  /** A secret: it is all a sender needs (see webhook-endpoint-label.ts); it is never logged or audited. */
  url: string;
  /** How logs and the audit trail name this endpoint; without it, its origin and a hash of its URL. */
  name?: string | undefined;
  /** Event types this endpoint receives, or every type. */
  events: readonly string[] | '*';
  /** Signs each body with HMAC-SHA256 so the receiver can tell it came from us. */
  secret?: string | undefined;
}

export interface WebhookEvent {
  type: string;
  rolloutId: string;
  /** ISO 8601 instant of the change. */
  at: string;
  data: Record<string, unknown>;
}

export interface WebhookNotifierOptions {
  endpoints: readonly WebhookEndpoint[];
  /** Attempts per delivery, the first included. */
  maxAttempts?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Per attempt, connection to answer. */
  timeoutMs?: number;
  /** Deliveries waiting per endpoint; beyond it the oldest waiting one is dropped. */
  maxQueue?: number;
  log: Logger;
  clock?: Clock;
  /** Told of each delivery given up after its last attempt (the coordinator audits it); never of one dropped at stop. */
  onGiveUp?: (failure: WebhookFailure) => void;
}

/** A delivery given up: where, what, and the last attempt's answer. */
export interface WebhookFailure {
  /** The endpoint's label (`webhookEndpointLabel`), never its URL. */
  endpoint: string;
  deliveryId: string;
  type: string;
  rolloutId: string;
  attempts: number;
  status?: number | undefined;
  error?: string | undefined;
}

export interface WebhookStats {
  delivered: number;
  failedAttempts: number;
  dropped: number;
  /** Waiting or in flight. */
  queued: number;
}

interface Delivery {
  /** Sent as x-fleetpatch-delivery, unchanged across retries, so receivers can deduplicate. */
  id: string;
  type: string;
  rolloutId: string;
  body: string;
  enqueuedAt: number;
}

/** One endpoint's queue and its single worker: deliveries reach a receiver in order, one at a time. */
interface Lane {
  endpoint: WebhookEndpoint;
  /** What logs and the audit trail call the endpoint: its URL is a secret. */
  label: string;
  pending: Delivery[];
  inFlight: Delivery | undefined;
  worker: Promise<void> | undefined;
}

/** `err` is text with the endpoint's URL taken out, fit for logs and the audit trail. */
type AttemptOutcome = { ok: true; status: number } | { ok: false; status?: number; err?: string };

/**
 * Tells outside systems (chat, ticketing, dashboards) about rollout events. Fire and forget for the
 * caller: `notify` only queues, so a slow or dead receiver never slows a rollout down. The store
 * calls it after a transaction commits; delivery is at least once (receivers deduplicate on the
 * delivery id) and best effort: after `maxAttempts` a delivery is logged and dropped, and nothing
 * survives a restart.
 */
export class WebhookNotifier {
  readonly #lanes: Lane[];
  readonly #maxAttempts: number;
  readonly #baseDelayMs: number;
  readonly #maxDelayMs: number;
  readonly #timeoutMs: number;
  readonly #maxQueue: number;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #onGiveUp: ((failure: WebhookFailure) => void) | undefined;
  readonly #abort = new AbortController();
  readonly #idleWaiters: (() => void)[] = [];
  #stopping: Promise<void> | undefined;
  #delivered = 0;
  #failedAttempts = 0;
  #dropped = 0;

  constructor(options: WebhookNotifierOptions) {
    this.#maxAttempts = positiveInteger('maxAttempts', options.maxAttempts ?? 6);
    this.#baseDelayMs = positiveInteger('baseDelayMs', options.baseDelayMs ?? 500);
    this.#maxDelayMs = positiveInteger('maxDelayMs', options.maxDelayMs ?? 30_000);
    this.#timeoutMs = positiveInteger('timeoutMs', options.timeoutMs ?? 5000);
    this.#maxQueue = positiveInteger('maxQueue', options.maxQueue ?? 10_000);
    this.#log = options.log.child({ component: 'webhook-notifier' });
    this.#clock = options.clock ?? systemClock;
    this.#onGiveUp = options.onGiveUp;
    this.#lanes = options.endpoints.map((endpoint) => ({
      endpoint,
      label: validEndpointLabel(endpoint),
      pending: [],
      inFlight: undefined,
      worker: undefined,
    }));
  }

  /** Queues one delivery per endpoint that wants this event type. Never throws, never waits. */
  notify(event: WebhookEvent): void {
    try {
      const lanes = this.#lanes.filter((lane) => wants(lane.endpoint, event.type));
      if (lanes.length === 0) return;
      if (this.#stopping) {
        this.#dropped += lanes.length;
        this.#log.debug({ type: event.type, rolloutId: event.rolloutId }, 'webhook event after stop, dropped');
        return;
      }
      let body: string;
      try {
        body = JSON.stringify(event);
      } catch (err) {
        this.#dropped += lanes.length;
        this.#log.warn(
          { err, type: event.type, rolloutId: event.rolloutId },
          'webhook event is not serialisable, dropped',
        );
        return;
      }
      const enqueuedAt = this.#clock.now();
      for (const lane of lanes) {
        lane.pending.push({ id: randomUUID(), type: event.type, rolloutId: event.rolloutId, body, enqueuedAt });
        if (lane.pending.length > this.#maxQueue) {
          const oldest = lane.pending.shift();
          this.#dropped++;
          this.#log.warn(
            { endpoint: lane.label, deliveryId: oldest?.id, type: oldest?.type, maxQueue: this.#maxQueue },
            'webhook queue full, oldest delivery dropped',
          );
        }
        this.#ensureWorker(lane);
      }
    } catch (err) {
      // A notification must never break the transition that caused it.
      this.#log.error({ err, type: event?.type }, 'webhook notify failed');
    }
  }

  stats(): WebhookStats {
    let queued = 0;
    for (const lane of this.#lanes) queued += lane.pending.length + (lane.inFlight ? 1 : 0);
    return { delivered: this.#delivered, failedAttempts: this.#failedAttempts, dropped: this.#dropped, queued };
  }

  /** Resolves once nothing is waiting or in flight (delivered, or given up). For tests and drains. */
  whenIdle(): Promise<void> {
    if (this.#isIdle()) return Promise.resolve();
    return new Promise((resolve) => {
      this.#idleWaiters.push(resolve);
    });
  }

  /** Aborts requests in flight and backoff waits, drops what is still queued. Idempotent. */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    this.#abort.abort(new FleetError('cancelled', 'webhook notifier stopped'));
    await Promise.all(this.#lanes.map((lane) => lane.worker));
    let left = 0;
    for (const lane of this.#lanes) {
      left += lane.pending.length;
      lane.pending.length = 0;
    }
    if (left > 0) {
      this.#dropped += left;
      this.#log.warn({ dropped: left }, 'webhook notifier stopped with deliveries queued, dropped');
    }
    this.#settleIdle();
  }

  #ensureWorker(lane: Lane): void {
    if (lane.worker) return;
    lane.worker = this.#work(lane)
      .catch((err: unknown) => {
        this.#log.error({ err, endpoint: lane.label }, 'webhook worker failed');
      })
      .finally(() => {
        lane.worker = undefined;
        // notify() may have queued while this worker was finishing, after its last look.
        if (!this.#stopping && lane.pending.length > 0) this.#ensureWorker(lane);
        else this.#settleIdle();
      });
  }

  async #work(lane: Lane): Promise<void> {
    for (;;) {
      if (this.#abort.signal.aborted) return;
      const delivery = lane.pending.shift();
      if (!delivery) return;
      lane.inFlight = delivery;
      try {
        await this.#deliver(lane, delivery);
      } finally {
        lane.inFlight = undefined;
      }
    }
  }

  async #deliver(lane: Lane, delivery: Delivery): Promise<void> {
    const log = this.#log.child({ endpoint: lane.label, deliveryId: delivery.id, type: delivery.type });
    let last: AttemptOutcome | undefined;
    for (let attempt = 1; attempt <= this.#maxAttempts; attempt++) {
      last = await this.#attempt(lane, delivery);
      if (last.ok) {
        this.#delivered++;
        log.debug({ attempt, status: last.status }, 'webhook delivered');
        return;
      }
      if (this.#abort.signal.aborted) break;
      this.#failedAttempts++;
      if (attempt === this.#maxAttempts) break;
      const wait = this.#backoff(attempt);
      log.debug({ attempt, status: last.status, err: last.err, retryInMs: wait }, 'webhook attempt failed, retrying');
      try {
        await this.#clock.sleep(wait, this.#abort.signal);
      } catch {
        // Aborted by stop(); the check below ends the delivery.
      }
      if (this.#abort.signal.aborted) break;
    }
    this.#dropped++;
    if (this.#abort.signal.aborted) {
      log.debug('webhook delivery abandoned at stop');
      return;
    }
    log.warn(
      {
        attempts: this.#maxAttempts,
        status: last?.ok === false ? last.status : undefined,
        err: last?.ok === false ? last.err : undefined,
        ageMs: this.#clock.now() - delivery.enqueuedAt,
      },
      'webhook delivery given up',
    );
    try {
      this.#onGiveUp?.({
        endpoint: lane.label,
        deliveryId: delivery.id,
        type: delivery.type,
        rolloutId: delivery.rolloutId,
        attempts: this.#maxAttempts,
        status: last?.ok === false ? last.status : undefined,
        error: last?.ok === false ? last.err : undefined,
      });
    } catch (err) {
      log.error({ err }, 'recording a failed webhook delivery failed');
    }
  }

  async #attempt({ endpoint, label }: Lane, delivery: Delivery): Promise<AttemptOutcome> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'fleetpatch-coordinator',
      'x-fleetpatch-event': delivery.type,
      'x-fleetpatch-delivery': delivery.id,
    };
    if (endpoint.secret !== undefined) {
      headers['x-fleetpatch-signature'] =
        `sha256=${createHmac('sha256', endpoint.secret).update(delivery.body).digest('hex')}`;
    }
    const limited = abortAfter(this.#abort.signal, this.#timeoutMs);
    try {
      const response = await fetch(endpoint.url, {
        method: 'POST',
        headers,
        body: delivery.body,
        // A redirect is a misconfiguration to surface, not a reason to send the payload elsewhere.
        redirect: 'manual',
        signal: limited.signal,
      });
      // The answer's body is of no interest; releasing it frees the connection for the next delivery.
      await response.body?.cancel().catch(() => undefined);
      return response.status >= 200 && response.status < 300
        ? { ok: true, status: response.status }
        : { ok: false, status: response.status };
    } catch (err) {
      return { ok: false, err: webhookErrorText(err, endpoint.url, label) };
    } finally {
      limited.clear();
    }
  }

  /** Exponential backoff with full jitter, so receivers coming back are not hit in lockstep. */
  #backoff(failedAttempt: number): number {
    const ceiling = Math.min(this.#maxDelayMs, this.#baseDelayMs * 2 ** (failedAttempt - 1));
    return Math.floor(Math.random() * ceiling);
  }

  #isIdle(): boolean {
    return this.#lanes.every((lane) => lane.worker === undefined && lane.pending.length === 0);
  }

  #settleIdle(): void {
    if (!this.#isIdle()) return;
    for (const resolve of this.#idleWaiters.splice(0)) resolve();
  }
}

function wants(endpoint: WebhookEndpoint, type: string): boolean {
  return endpoint.events === '*' || endpoint.events.includes(type);
}

/** The endpoint's label, once its URL is known to be one fetch can POST to. */
function validEndpointLabel(endpoint: WebhookEndpoint): string {
  let parsed: URL;
  try {
    parsed = new URL(endpoint.url);
  } catch (err) {
    throw new FleetError('validation_failed', 'webhook url is not a valid URL', { field: 'url' }, { cause: err });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new FleetError('validation_failed', `webhook url must be http or https, not ${parsed.protocol}`, {
      field: 'url',
    });
  }
  return webhookEndpointLabel(endpoint);
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new FleetError('validation_failed', `webhook notifier ${name} must be a positive integer`, { field: name });
  }
  return value;
}
