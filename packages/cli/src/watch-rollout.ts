import type { RolloutStatus } from '@fleetpatch/shared';
import type { ApiClient } from './api-client.js';
import { followRolloutEvents } from './rollout-event-stream.js';
import { FINAL_ROLLOUT_STATES } from './rollout-final-states.js';

/** Wakes a waiter when something changed; a change that came while nobody waited is kept. */
class ChangeSignal {
  private pending = false;
  private wake: (() => void) | undefined;

  notify(): void {
    this.pending = true;
    this.wake?.();
  }

  async wait(timeoutMs: number): Promise<void> {
    if (!this.pending) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        this.wake = done;
      });
    }
    this.pending = false;
  }
}

export interface WatchOptions {
  /** Safety-net poll while the event stream is connected. */
  pollMs?: number;
  /** Poll while the stream is down (refused, or reconnecting). */
  fallbackPollMs?: number;
}

/**
 * Calls `onStatus` with the rollout's status now and after every audit event (the SSE stream is
 * the trigger; status is always re-fetched, so the view is never assembled from deltas), until the
 * rollout reaches a final state; returns that status.
 */
export async function watchRollout(
  api: ApiClient,
  rolloutId: string,
  onStatus: (status: RolloutStatus) => void,
  { pollMs = 5000, fallbackPollMs = 1000 }: WatchOptions = {},
): Promise<RolloutStatus> {
  const controller = new AbortController();
  const changes = new ChangeSignal();
  let connected = false;
  const stream = followRolloutEvents(api, rolloutId, {
    after: 0,
    signal: controller.signal,
    onEvent: () => changes.notify(),
    onConnect: () => {
      connected = true;
    },
    onDisconnect: () => {
      connected = false;
      changes.notify();
    },
  }).catch(() => {
    // Refused stream (e.g. a proxy that does not pass SSE): polling alone still gets there.
    connected = false;
  });
  try {
    for (;;) {
      const status = await api.rolloutStatus(rolloutId);
      onStatus(status);
      if (FINAL_ROLLOUT_STATES.has(status.rollout.state)) return status;
      await changes.wait(connected ? pollMs : fallbackPollMs);
    }
  } finally {
    controller.abort();
    await stream;
  }
}
