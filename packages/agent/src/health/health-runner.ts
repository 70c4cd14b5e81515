import { bakeFailuresAllowed, type HealthCheck, type HealthCheckResult, type HealthPolicy } from '@fleetpatch/shared';
import { type Clock, systemClock } from '../clock.js';
import { checkLabel } from './check-label.js';
import type { HealthProbe } from './health-probe.js';

/** How long a check without its own `timeoutMs` may take before the runner stops waiting for it. */
const DEFAULT_CHECK_LIMIT_MS = 10_000;
/**
 * Added to a check's own `timeoutMs`: a check that honours its timeout reports it itself, with
 * the output it saw; the runner's limit is for one that cannot (a read stuck in D-state I/O).
 */
const CHECK_LIMIT_GRACE_MS = 1_000;

export interface HealthPoll {
  healthy: boolean;
  results: HealthCheckResult[];
}

export interface HealthVerdict extends HealthPoll {
  /** Human-readable, for the journal and the operator: why healthy, or which check failed how. */
  reason: string;
}

export interface HealthWatchOptions {
  signal: AbortSignal;
  /**
   * Called after every poll with its results and the polls in a row that had a failing check (0
   * when this one passed); the executor forwards these as order progress.
   */
  onResults?: (results: HealthCheckResult[], failingPolls: number) => void;
}

/**
 * Polls a host's health checks and judges them over time. Time comes from the `Clock` so the
 * streak and deadline rules can be tested exactly; the probe does the looking. Streaks, deadlines
 * and watches are measured on its monotonic reading: a wall clock stepped forward would otherwise
 * pass a streak or a deadline at the next poll, and one stepped back would hold them for the step.
 */
export class HealthRunner {
  constructor(
    private readonly probe: HealthProbe,
    private readonly clock: Clock = systemClock,
  ) {}

  /** Every check once, in parallel. Healthy when all pass; no checks is healthy. */
  async runOnce(checks: readonly HealthCheck[], signal: AbortSignal): Promise<HealthPoll> {
    signal.throwIfAborted();
    const results = await Promise.all(checks.map((check) => this.runLimited(check, signal)));
    // A check cut short by the abort reads as failed; that must not pass for a verdict.
    signal.throwIfAborted();
    return { healthy: results.every((result) => result.ok), results };
  }

  /**
   * After apply: healthy once every check has passed on every poll for `minHealthySeconds`
   * (a failed poll restarts the streak); unhealthy when `healthyDeadlineSeconds` after the start
   * pass first. The last poll lands on the deadline itself, so a streak that completes exactly
   * then still counts. With `failAfterConsecutive`, unhealthy as soon as that many polls in a row
   * had a failing check (fail fast). Rejects with the signal's reason on abort.
   */
  async waitUntilHealthy(policy: HealthPolicy, options: HealthWatchOptions): Promise<HealthVerdict> {
    const { signal } = options;
    signal.throwIfAborted();
    if (policy.checks.length === 0) return { healthy: true, results: [], reason: 'no health checks' };

    const intervalMs = policy.intervalSeconds * 1000;
    const requiredMs = policy.minHealthySeconds * 1000;
    const start = this.clock.monotonicNow();
    const deadline = start + policy.healthyDeadlineSeconds * 1000;
    const failures = new FailureTracker();
    let streakStart: number | undefined;

    for (;;) {
      const polledAt = this.clock.monotonicNow();
      const poll = await this.runOnce(policy.checks, signal);
      failures.record(poll.results, polledAt);
      options.onResults?.(poll.results, failures.failingPolls);

      const failFast = policy.failAfterConsecutive;
      if (failFast !== undefined && failures.failingPolls >= failFast) {
        return {
          ...poll,
          reason: `${failures.describe(poll.results, polledAt)}; ${failFast} failing ${polls(failFast)} in a row (failAfterConsecutive)`,
        };
      }
      if (poll.healthy) {
        streakStart ??= polledAt;
        const streakMs = polledAt - streakStart;
        if (streakMs >= requiredMs) {
          return { ...poll, reason: healthyReason(policy.checks.length, streakMs, requiredMs) };
        }
      } else {
        streakStart = undefined;
      }

      const now = this.clock.monotonicNow();
      if (now >= deadline) {
        const deadlineText = `deadline ${seconds(deadline - start)}`;
        const why = poll.healthy
          ? `checks passing for ${seconds(polledAt - (streakStart ?? polledAt))} of the required ${seconds(requiredMs)}`
          : failures.describe(poll.results, polledAt);
        return { ...poll, healthy: false, reason: `${why}; ${deadlineText}` };
      }
      await this.sleep(Math.min(intervalMs, deadline - now), signal);
    }
  }

  /**
   * During bake: polls for `durationSeconds` and fails once `bakeTolerance.consecutiveFailures`
   * polls in a row (default 1: the first) had a failing check; healthy when the whole duration
   * passes. With no checks there is nothing to watch, so healthy at once.
   */
  async watch(policy: HealthPolicy, durationSeconds: number, options: HealthWatchOptions): Promise<HealthVerdict> {
    const { signal } = options;
    signal.throwIfAborted();
    if (policy.checks.length === 0) return { healthy: true, results: [], reason: 'no health checks' };

    const intervalMs = policy.intervalSeconds * 1000;
    const start = this.clock.monotonicNow();
    const end = start + Math.max(0, durationSeconds) * 1000;
    const failures = new FailureTracker();
    const allowed = bakeFailuresAllowed(policy);

    for (;;) {
      const polledAt = this.clock.monotonicNow();
      const poll = await this.runOnce(policy.checks, signal);
      failures.record(poll.results, polledAt);
      options.onResults?.(poll.results, failures.failingPolls);
      if (failures.failingPolls >= allowed) {
        const inARow = allowed > 1 ? ` (${allowed} failing polls in a row, bakeTolerance)` : '';
        return {
          ...poll,
          reason: `${failures.describe(poll.results, polledAt)} after ${seconds(polledAt - start)} of watch${inARow}`,
        };
      }
      const now = this.clock.monotonicNow();
      if (now >= end) {
        return {
          ...poll,
          reason: `all ${countChecks(policy.checks.length)} passed for ${seconds(end - start)} of watch`,
        };
      }
      await this.sleep(Math.min(intervalMs, end - now), signal);
    }
  }

  /**
   * One probe, raced against a time limit: a check that never settles (a stat on a dead NFS mount)
   * must fail, not hold the verdict — and with it the revert — for ever. The limit runs on the
   * Clock, and starts only once the probe has had a turn of the event loop: a probe that answers at
   * once never touches the clock (so a fake clock's time stands still in tests).
   */
  private async runLimited(check: HealthCheck, signal: AbortSignal): Promise<HealthCheckResult> {
    const limitMs = 'timeoutMs' in check ? check.timeoutMs + CHECK_LIMIT_GRACE_MS : DEFAULT_CHECK_LIMIT_MS;
    const giveUp = new AbortController();
    const answer = this.probe.run(check, AbortSignal.any([signal, giveUp.signal]));
    const limit = (async (): Promise<HealthCheckResult> => {
      await new Promise<void>((resolve) => setImmediate(resolve));
      const failed = (observed: string): HealthCheckResult => ({
        check: checkLabel(check),
        kind: check.kind,
        ok: false,
        observed,
        at: new Date(this.clock.now()).toISOString(),
      });
      if (giveUp.signal.aborted) return failed('superseded'); // the probe answered: this result is never used
      try {
        await this.clock.sleep(limitMs, AbortSignal.any([signal, giveUp.signal]));
      } catch {
        // Aborted: by the caller (runOnce then throws its reason) or because the probe answered.
        return failed('aborted');
      }
      return failed(`check did not finish in ${limitMs} ms`);
    })();
    try {
      return await Promise.race([answer, limit]);
    } finally {
      // Stops the timer, and tells a probe that lost the race to give up what it can.
      giveUp.abort();
    }
  }

  private async sleep(ms: number, signal: AbortSignal): Promise<void> {
    try {
      await this.clock.sleep(ms, signal);
    } catch (err) {
      // timers/promises rejects with an AbortError wrapping the reason; callers want the reason.
      if (signal.aborted) throw signal.reason;
      throw err;
    }
  }
}

/** Remembers since when each check (by position) has been failing without a break, and how many polls in a row failed. */
class FailureTracker {
  private readonly failingSince = new Map<number, number>();
  /** Polls in a row with at least one failing check, the latest included; 0 after a passing poll. */
  failingPolls = 0;

  record(results: readonly HealthCheckResult[], at: number): void {
    this.failingPolls = results.every((result) => result.ok) ? 0 : this.failingPolls + 1;
    results.forEach((result, index) => {
      if (result.ok) this.failingSince.delete(index);
      else if (!this.failingSince.has(index)) this.failingSince.set(index, at);
    });
  }

  describe(results: readonly HealthCheckResult[], at: number): string {
    const failed = results.flatMap((result, index) => {
      if (result.ok) return [];
      const since = this.failingSince.get(index) ?? at;
      const lasting = at > since ? ` for ${seconds(at - since)}` : '';
      return [`${result.kind} check '${result.check}' failed: ${result.observed}${lasting}`];
    });
    return failed.join('; ');
  }
}

function healthyReason(count: number, streakMs: number, requiredMs: number): string {
  if (requiredMs === 0) return `all ${countChecks(count)} passed`;
  return `all ${countChecks(count)} passed for ${seconds(streakMs)} (required ${seconds(requiredMs)})`;
}

function polls(count: number): string {
  return count === 1 ? 'poll' : 'polls';
}

function countChecks(count: number): string {
  return count === 1 ? '1 check' : `${count} checks`;
}

function seconds(ms: number): string {
  const s = ms / 1000;
  return `${Number.isInteger(s) ? s : s.toFixed(1)} s`;
}
