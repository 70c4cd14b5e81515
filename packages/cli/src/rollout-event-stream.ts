import { setTimeout as sleep } from 'node:timers/promises';
import type { EventRecord } from '@fleetpatch/shared';
import type { ApiClient } from './api-client.js';
import { ApiError } from './cli-errors.js';
import { readServerSentEvents } from './sse-reader.js';

export interface FollowOptions {
  /** Start after this event seq (0: the whole trail). */
  after: number;
  signal: AbortSignal;
  onEvent(event: EventRecord): void;
  /**
   * `coalesced`: the host events are not sent; a `hosts.changed` notice says hosts moved, a few
   * times a second at most (for a reader that reads the status after a change: the watch).
   */
  hostEvents?: 'all' | 'coalesced';
  /** Hosts moved (a host's new phase, or a `hosts.changed` notice; the status shows which); not an audit event. */
  onHostChange?(): void;
  onConnect?(): void;
  /** The stream dropped (coordinator restart, network); it is retried after `retryMs`. */
  onDisconnect?(reason: string): void;
  retryMs?: number;
}

/**
 * Follows `GET /v1/rollouts/:id/events/stream` until `signal` aborts, reconnecting with
 * `Last-Event-ID` so no event is missed or repeated. An HTTP refusal (unknown rollout, bad token)
 * is not retried: it rejects.
 */
export async function followRolloutEvents(api: ApiClient, rolloutId: string, options: FollowOptions): Promise<void> {
  let after = options.after;
  let hostEvents = options.hostEvents ?? 'all';
  const { signal } = options;
  while (!signal.aborted) {
    let reason = 'the coordinator closed the stream';
    try {
      const body = await api.openEventStream(rolloutId, after, signal, hostEvents);
      options.onConnect?.();
      for await (const message of readServerSentEvents(body)) {
        // No id: a host's live phase (`host.progress`) or a notice that hosts moved (`hosts.changed`),
        // not an audit event; nothing to resume from.
        if (message.id === null) {
          options.onHostChange?.();
          continue;
        }
        const event = JSON.parse(message.data) as EventRecord;
        // Only an audit event moves the resume point: anything else with an id is not one of ours.
        if (typeof event.seq !== 'number' || event.seq <= after) continue;
        after = event.seq;
        options.onEvent(event);
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError && err.status === 400 && hostEvents === 'coalesced') {
        // A coordinator from before `hostEvents` refuses it: every event then, which triggers as well.
        hostEvents = 'all';
        continue;
      }
      if (err instanceof ApiError) throw err;
      reason = err instanceof Error ? err.message : String(err);
    }
    if (signal.aborted) return;
    options.onDisconnect?.(reason);
    await sleep(options.retryMs ?? 1000, undefined, { signal }).catch(() => undefined);
  }
}
