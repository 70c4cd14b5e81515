import { setTimeout as delay } from 'node:timers/promises';
import type { EventRecord, RolloutState, RolloutStatus, RolloutSummary } from '@fleetpatch/shared';
import type { ApiClient } from './api-client.js';
import { ConnectionError, ExitCode } from './cli-errors.js';
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

  /** Resolves on a change, after `timeoutMs`, or when `signal` aborts. */
  async wait(timeoutMs: number, signal: AbortSignal): Promise<void> {
    if (!this.pending && !signal.aborted) {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener('abort', done);
          this.wake = undefined;
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        signal.addEventListener('abort', done);
        this.wake = done;
      });
    }
    this.pending = false;
  }
}

/**
 * A watch refetches the status after every change, which during a rollout is all the time: without a
 * pace, two watchers of a 5,000-host rollout kept the coordinator busier than the rollout itself
 * (2.6 s became 4.9 s). So between two fetches it waits at least `minIntervalMs`, and at least this
 * many times as long as the last fetch took: a status that takes 60 ms to answer is fetched at most
 * every 600 ms, and a watch keeps the coordinator busy at most a tenth of the time, however large
 * the rollout. The spacing never exceeds the poll's interval (5 s while the stream is up): a fetch
 * slowed by the network must not keep a final state from the watch for long.
 */
const FETCH_SPACING_FACTOR = 10;

/**
 * A rollout of at most this many hosts is watched through its full status (every host, so the log
 * can name each host's moves); a larger one through its summary, whose size does not grow with the
 * fleet (at 10,000 hosts the full status is ~2 MB and tens of milliseconds of the coordinator's time).
 */
export const FULL_STATUS_HOSTS = 1000;

/** What one fetch of a watch read: the full status, or the summary of a large rollout. */
export type WatchSource = { kind: 'status'; status: RolloutStatus } | { kind: 'summary'; summary: RolloutSummary };

export interface WatchOptions {
  /** Always read the full status, whatever the rollout's size (`--json` prints it). */
  fullStatus?: boolean;
  /** Safety-net poll while the event stream is connected. */
  pollMs?: number;
  /**
   * The least time between two status fetches, however many changes come (a terminal redraws at
   * this pace); at most ten times the last fetch's time, capped at the poll.
   */
  minIntervalMs?: number;
  /** Poll while the stream is down (refused, or reconnecting). */
  fallbackPollMs?: number;
  /** Stop watching after this long without a final state (`--timeout`); undefined: no limit. */
  timeoutMs?: number | undefined;
  /**
   * Once the rollout has been seen, how long the coordinator may stay unreachable (a restart, a
   * network blip) before the watch gives up. A coordinator that cannot be reached at the very first
   * call is not waited for: that is a wrong URL or a down service, said at once.
   */
  reconnectForMs?: number;
  /** Every audit event of the rollout but its hosts' (coalesced), the backlog first (for wave timings). */
  onEvent?(event: EventRecord): void;
  /** The coordinator could not be reached (`since` the first failure), or was reached again (undefined). */
  onConnectionChange?(lost: { reason: string; since: Date } | undefined): void;
}

/** How a watch ended: the rollout reached a final state, or the watch gave up. */
export type WatchOutcome =
  | { kind: 'final'; source: WatchSource }
  | { kind: 'timed_out'; source: WatchSource | undefined }
  | { kind: 'unreachable'; source: WatchSource | undefined; reason: string };

/**
 * Calls `onSource` with the rollout's status (a large one's summary: FULL_STATUS_HOSTS) now and after
 * every audit event or host phase (the SSE stream is the trigger; it is always read again, so the view
 * is never assembled from deltas; reads are paced: FETCH_SPACING_FACTOR), until the rollout reaches a final state, `timeoutMs` passes, or the coordinator stays unreachable for longer
 * than `reconnectForMs`. A coordinator restart is ridden out: the stream resumes with
 * `Last-Event-ID` and status polling carries on. An HTTP refusal (unknown rollout, bad token) throws.
 */
export async function watchRollout(
  api: ApiClient,
  rolloutId: string,
  onSource: (source: WatchSource) => void | Promise<void>,
  options: WatchOptions = {},
): Promise<WatchOutcome> {
  const { pollMs = 5000, fallbackPollMs = 1000, minIntervalMs = 250, timeoutMs, reconnectForMs = 120_000 } = options;
  const deadline = timeoutMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + timeoutMs;
  const controller = new AbortController();
  const timer = Number.isFinite(deadline) ? setTimeout(() => controller.abort(), timeoutMs) : undefined;
  const changes = new ChangeSignal();
  let connected = false;
  const stream = followRolloutEvents(api, rolloutId, {
    after: 0,
    signal: controller.signal,
    // The watch reads the status after a change, so it asks to be told that hosts moved, not each move:
    // two watchers of 10,000 hosts were sent ~20,000 host events each, a write of the coordinator's each.
    hostEvents: 'coalesced',
    onEvent: (event) => {
      options.onEvent?.(event);
      changes.notify();
    },
    // Hosts moved: the status is fetched again (the signal coalesces a burst into one fetch).
    onHostChange: () => changes.notify(),
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
  let last: WatchSource | undefined;
  let lost: { reason: string; since: Date } | undefined;
  try {
    for (;;) {
      let source: WatchSource;
      // Timed on the monotonic clock: a step of the wall clock must not stretch or shrink the spacing.
      const fetchedAt = performance.now();
      let tookMs = 0;
      /**
       * Waits out the spacing after this fetch (changes that come meanwhile are kept by the signal),
       * then for a change or the poll, due `pollAfterMs` from the fetch, not from the spacing's end.
       */
      const paced = async (pollAfterMs: number) => {
        // Ten times the fetch, but never longer than the poll: a slow network must not hide a final state for long.
        const spacingMs = Math.max(minIntervalMs, Math.min(tookMs * FETCH_SPACING_FACTOR, pollAfterMs));
        const rest = fetchedAt + spacingMs - performance.now();
        if (rest > 0) await delay(rest, undefined, { signal: controller.signal }).catch(() => {}); // aborted: seen by the caller
        await changes.wait(fetchedAt + pollAfterMs - performance.now(), controller.signal);
      };
      try {
        source = await fetchSource(api, rolloutId, last, options.fullStatus === true, controller.signal);
        tookMs = performance.now() - fetchedAt;
      } catch (err) {
        tookMs = performance.now() - fetchedAt;
        if (controller.signal.aborted) return { kind: 'timed_out', source: last };
        if (!(err instanceof ConnectionError)) throw err;
        if (last === undefined) throw err;
        lost ??= { reason: err.message, since: new Date() };
        options.onConnectionChange?.(lost);
        if (Date.now() - lost.since.getTime() >= reconnectForMs) {
          return { kind: 'unreachable', source: last, reason: err.message };
        }
        await paced(fallbackPollMs);
        continue;
      }
      if (lost) {
        lost = undefined;
        options.onConnectionChange?.(undefined);
      }
      last = source;
      await onSource(source);
      if (FINAL_ROLLOUT_STATES.has(rolloutOf(source).state)) return { kind: 'final', source };
      await paced(connected ? pollMs : fallbackPollMs);
      if (controller.signal.aborted) return { kind: 'timed_out', source: last };
    }
  } finally {
    clearTimeout(timer);
    controller.abort();
    await stream;
  }
}

/**
 * One fetch: the full status of a rollout last seen with 1 to FULL_STATUS_HOSTS hosts; otherwise
 * (the first fetch, a large rollout, one not started yet: its hosts are chosen at the start) its
 * summary, and then its full status too if the summary shows it has at most FULL_STATUS_HOSTS.
 */
async function fetchSource(
  api: ApiClient,
  rolloutId: string,
  last: WatchSource | undefined,
  alwaysFull: boolean,
  signal: AbortSignal,
): Promise<WatchSource> {
  const status = async (): Promise<WatchSource> => ({
    kind: 'status',
    status: await api.rolloutStatus(rolloutId, signal),
  });
  const lastCount = last && rolloutOf(last).hostCount;
  if (alwaysFull || (lastCount !== undefined && lastCount > 0 && lastCount <= FULL_STATUS_HOSTS)) return await status();
  const summary = await api.rolloutSummary(rolloutId, signal);
  return summary.rollout.hostCount <= FULL_STATUS_HOSTS ? await status() : { kind: 'summary', summary };
}

export function rolloutOf(source: WatchSource): RolloutStatus['rollout'] | RolloutSummary['rollout'] {
  return source.kind === 'status' ? source.status.rollout : source.summary.rollout;
}

/** The exit code a runbook gets for how a watch ended (cli-errors.ts has the table). */
export function watchExitCode(outcome: WatchOutcome): ExitCode {
  if (outcome.kind === 'timed_out') return ExitCode.watchTimedOut;
  if (outcome.kind === 'unreachable') return ExitCode.unreachable;
  return FINAL_STATE_EXIT_CODES[rolloutOf(outcome.source).state] ?? ExitCode.failed;
}

const FINAL_STATE_EXIT_CODES: Partial<Record<RolloutState, ExitCode>> = {
  succeeded: ExitCode.ok,
  halted: ExitCode.halted,
  aborted: ExitCode.aborted,
  reverted: ExitCode.reverted,
  revert_failed: ExitCode.revertFailed,
};
