import { type HealthCheck, type HealthCheckResult, type HealthPolicy, HealthPolicySchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../src/clock.js';
import type { HealthProbe } from '../src/health/health-probe.js';
import { HealthRunner } from '../src/health/health-runner.js';

const HOUR_MS = 3_600_000;

/**
 * A machine's two clocks. Time passes (on both) only while the runner sleeps; `stepAtSleep` makes the
 * wall clock alone jump by `stepMs` during that sleep, as an NTP step (chrony's makestep, a VM resumed
 * and resynchronised, a person's `date -s`) does: timers and the monotonic clock do not move with it.
 */
class SteppingClock implements Clock {
  private monotonic = 0;
  private wallOffset = 1_700_000_000_000;
  private sleeps = 0;

  constructor(
    private readonly stepAtSleep: number,
    private readonly stepMs: number,
  ) {}

  now(): number {
    return this.wallOffset + this.monotonic;
  }

  monotonicNow(): number {
    return this.monotonic;
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps++;
    if (this.sleeps === this.stepAtSleep) this.wallOffset += this.stepMs;
    this.monotonic += ms;
  }
}

/** Passes from poll `healthyFrom` on (0: always); counts the polls. */
class CountingProbe implements HealthProbe {
  polls = 0;

  constructor(private readonly healthyFrom: number) {}

  async run(check: HealthCheck): Promise<HealthCheckResult> {
    const ok = this.polls >= this.healthyFrom;
    this.polls++;
    return { check: check.name ?? 'web', kind: check.kind, ok, observed: ok ? 'HTTP 200' : 'HTTP 503', at: '' };
  }
}

function policy(overrides: Partial<HealthPolicy>): HealthPolicy {
  return HealthPolicySchema.parse({
    checks: [{ kind: 'http', name: 'web', url: 'http://127.0.0.1:8080/health' }],
    intervalSeconds: 2,
    minHealthySeconds: 0,
    healthyDeadlineSeconds: 60,
    ...overrides,
  });
}

const options = { signal: new AbortController().signal };

describe('HealthRunner under a wall clock that steps', () => {
  it('does not count a step forward as time the checks kept passing', async () => {
    const probe = new CountingProbe(0);
    const runner = new HealthRunner(probe, new SteppingClock(1, HOUR_MS));
    const verdict = await runner.waitUntilHealthy(
      policy({ minHealthySeconds: 30, healthyDeadlineSeconds: 120 }),
      options,
    );
    // Polls at 0, 2, …, 30 s of real time: the 30 s streak was watched, not skipped over.
    expect(verdict).toMatchObject({ healthy: true, reason: 'all 1 check passed for 30 s (required 30 s)' });
    expect(probe.polls).toBe(16);
  });

  it('does not fail a host still coming up because the clock stepped past its deadline', async () => {
    const probe = new CountingProbe(5);
    const runner = new HealthRunner(probe, new SteppingClock(1, HOUR_MS));
    const verdict = await runner.waitUntilHealthy(policy({ healthyDeadlineSeconds: 60 }), options);
    expect(verdict).toMatchObject({ healthy: true });
    expect(probe.polls).toBe(6);
  });

  it('does not stretch the deadline of a failing host when the clock steps back', async () => {
    const probe = new CountingProbe(Number.POSITIVE_INFINITY);
    const runner = new HealthRunner(probe, new SteppingClock(1, -HOUR_MS));
    const verdict = await runner.waitUntilHealthy(policy({ healthyDeadlineSeconds: 60 }), options);
    // Polls at 0, 2, …, 60 s, then the verdict: not an hour more of polling (by then the coordinator
    // has long timed the host out, at its hostTimeoutSeconds).
    expect(verdict).toMatchObject({ healthy: false, reason: expect.stringMatching(/deadline 60 s$/) });
    expect(probe.polls).toBe(31);
  });

  it('does not end a bake watch early when the clock steps forward', async () => {
    const probe = new CountingProbe(0);
    const runner = new HealthRunner(probe, new SteppingClock(1, HOUR_MS));
    const verdict = await runner.watch(policy({ intervalSeconds: 10 }), 600, options);
    expect(verdict).toMatchObject({ healthy: true, reason: 'all 1 check passed for 600 s of watch' });
    expect(probe.polls).toBe(61);
  });
});
