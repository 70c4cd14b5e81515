import { type HealthCheck, type HealthCheckResult, type HealthPolicy, HealthPolicySchema } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { Clock } from '../src/clock.js';
import type { HealthProbe } from '../src/health/health-probe.js';
import { HealthRunner } from '../src/health/health-runner.js';

/** Time moves only when the runner sleeps, so every poll lands on an exact second. */
class FakeClock implements Clock {
  time = 1_700_000_000_000;
  readonly sleeps: number[] = [];

  now(): number {
    return this.time;
  }

  monotonicNow(): number {
    return this.time;
  }

  async sleep(ms: number, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted();
    this.sleeps.push(ms);
    this.time += ms;
  }
}

/** `true` passes; a string fails with that observation. One entry per poll; the last repeats. */
type Step = true | string;

/** Answers each check (by name) from its script, one step per call. */
class ScriptedProbe implements HealthProbe {
  readonly calls = new Map<string, number>();

  constructor(
    private readonly clock: FakeClock,
    private readonly script: Record<string, Step[]>,
    private readonly onRun?: (name: string, call: number) => void,
  ) {}

  async run(check: HealthCheck): Promise<HealthCheckResult> {
    const name = check.name ?? 'unnamed';
    const call = this.calls.get(name) ?? 0;
    this.calls.set(name, call + 1);
    this.onRun?.(name, call);
    const steps = this.script[name] ?? [true];
    const step = steps[Math.min(call, steps.length - 1)] ?? true;
    return {
      check: name,
      kind: check.kind,
      ok: step === true,
      observed: step === true ? 'fine' : step,
      at: new Date(this.clock.now()).toISOString(),
    };
  }
}

function policy(overrides: Partial<HealthPolicy> & { names?: string[] }): HealthPolicy {
  const { names = ['web'], ...rest } = overrides;
  return HealthPolicySchema.parse({
    checks: names.map((name) => ({ kind: 'http', name, url: `http://127.0.0.1:8080/${name}` })),
    intervalSeconds: 2,
    minHealthySeconds: 0,
    healthyDeadlineSeconds: 60,
    ...rest,
  });
}

function setup(script: Record<string, Step[]>, onRun?: (name: string, call: number) => void) {
  const clock = new FakeClock();
  const probe = new ScriptedProbe(clock, script, onRun);
  const runner = new HealthRunner(probe, clock);
  const polls: HealthCheckResult[][] = [];
  const failingPolls: number[] = [];
  const start = clock.time;
  return {
    clock,
    probe,
    runner,
    polls,
    failingPolls,
    elapsed: () => (clock.time - start) / 1000,
    options: (signal = new AbortController().signal) => ({
      signal,
      onResults: (r: HealthCheckResult[], failing: number) => {
        polls.push(r);
        failingPolls.push(failing);
      },
    }),
  };
}

describe('HealthRunner.runOnce', () => {
  it('runs every check once and is healthy when all pass', async () => {
    const { runner, probe } = setup({ web: [true], db: [true] });
    const { healthy, results } = await runner.runOnce(
      policy({ names: ['web', 'db'] }).checks,
      new AbortController().signal,
    );
    expect(healthy).toBe(true);
    expect(results.map((r) => r.check)).toEqual(['web', 'db']);
    expect([...probe.calls.values()]).toEqual([1, 1]);
  });

  it('is unhealthy when any check fails', async () => {
    const { runner } = setup({ web: [true], db: ['connection refused'] });
    const { healthy } = await runner.runOnce(policy({ names: ['web', 'db'] }).checks, new AbortController().signal);
    expect(healthy).toBe(false);
  });

  it('runs the checks in parallel', async () => {
    const started: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const probe: HealthProbe = {
      run: async (check) => {
        started.push(check.name ?? '');
        await gate;
        return { check: check.name ?? '', kind: check.kind, ok: true, observed: 'fine', at: new Date(0).toISOString() };
      },
    };
    const pending = new HealthRunner(probe, new FakeClock()).runOnce(
      policy({ names: ['a', 'b', 'c'] }).checks,
      new AbortController().signal,
    );
    // All three are running before any has finished.
    expect(started).toEqual(['a', 'b', 'c']);
    release();
    expect((await pending).healthy).toBe(true);
  });

  it('fails a check that never settles once its time limit passes, instead of blocking the verdict', async () => {
    const clock = new FakeClock();
    // A stat on a dead NFS mount: the probe never answers, not even to an abort.
    const probe: HealthProbe = {
      run: (check) =>
        check.kind === 'file'
          ? new Promise<never>(() => undefined)
          : Promise.resolve({
              check: 'web',
              kind: check.kind,
              ok: true,
              observed: 'fine',
              at: new Date(0).toISOString(),
            }),
    };
    const runner = new HealthRunner(probe, clock);
    const checks: HealthCheck[] = [
      { kind: 'file', path: '/mnt/nfs/app.conf' },
      {
        kind: 'http',
        name: 'web',
        url: 'http://127.0.0.1:8080/',
        expectStatus: { min: 200, max: 399 },
        timeoutMs: 2000,
      },
    ];
    const poll = await runner.runOnce(checks, new AbortController().signal);
    expect(poll.healthy).toBe(false);
    expect(poll.results).toMatchObject([
      { check: '/mnt/nfs/app.conf', kind: 'file', ok: false, observed: 'check did not finish in 10000 ms' },
      { check: 'web', ok: true },
    ]);
    // The check that answered started no timer on the clock; only the stuck one did.
    expect(clock.sleeps).toEqual([10_000]);

    const stuckHttp: HealthProbe = { run: () => new Promise<never>(() => undefined) };
    const timed = await new HealthRunner(stuckHttp, new FakeClock()).runOnce(
      checks.slice(1),
      new AbortController().signal,
    );
    // A check with its own timeout gets it plus a grace, so its own report (with output) wins when it can give one.
    expect(timed.results[0]?.observed).toBe('check did not finish in 3000 ms');
  });

  it('is healthy with no checks', async () => {
    const { runner } = setup({});
    expect(await runner.runOnce([], new AbortController().signal)).toEqual({ healthy: true, results: [] });
  });
});

describe('HealthRunner.waitUntilHealthy', () => {
  it('is healthy on the first passing poll when no streak is required', async () => {
    const { runner, polls, elapsed, options } = setup({ web: [true] });
    const verdict = await runner.waitUntilHealthy(policy({}), options());
    expect(verdict).toMatchObject({ healthy: true, reason: 'all 1 check passed' });
    expect(polls).toHaveLength(1);
    expect(elapsed()).toBe(0);
  });

  it('is healthy once checks have passed continuously for minHealthySeconds', async () => {
    const { runner, polls, elapsed, options } = setup({ web: ['HTTP 503', true], db: [true] });
    const verdict = await runner.waitUntilHealthy(
      policy({ names: ['web', 'db'], intervalSeconds: 2, minHealthySeconds: 5 }),
      options(),
    );
    // Poll at 0 fails; 2, 4, 6, 8 pass; the streak from 2 reaches 5 s at 8.
    expect(verdict.healthy).toBe(true);
    expect(verdict.reason).toBe('all 2 checks passed for 6 s (required 5 s)');
    expect(polls).toHaveLength(5);
    expect(elapsed()).toBe(8);
    expect(verdict.results.every((r) => r.ok)).toBe(true);
  });

  it('restarts the streak when a check fails mid-streak', async () => {
    const { runner, polls, elapsed, options } = setup({ web: [true, true, 'HTTP 500', true] });
    const verdict = await runner.waitUntilHealthy(policy({ intervalSeconds: 1, minHealthySeconds: 3 }), options());
    // Passes at 0 and 1, fails at 2, so the streak starts again at 3 and completes at 6.
    expect(verdict.healthy).toBe(true);
    expect(elapsed()).toBe(6);
    expect(polls.map((p) => p[0]?.ok)).toEqual([true, true, false, true, true, true, true]);
  });

  it('is unhealthy at the deadline and says which check failed, how, and for how long', async () => {
    const { runner, elapsed, options } = setup({ web: [true, 'HTTP 500'], db: [true] });
    const verdict = await runner.waitUntilHealthy(
      policy({ names: ['web', 'db'], intervalSeconds: 4, minHealthySeconds: 10, healthyDeadlineSeconds: 10 }),
      options(),
    );
    // Polls at 0, 4, 8 and a last one on the deadline at 10; web has failed since 4.
    expect(verdict.healthy).toBe(false);
    expect(elapsed()).toBe(10);
    expect(verdict.reason).toBe("http check 'web' failed: HTTP 500 for 6 s; deadline 10 s");
    expect(verdict.results.map((r) => r.ok)).toEqual([false, true]);
  });

  it('names every failing check in the reason', async () => {
    const { runner, options } = setup({ web: ['HTTP 502'], db: ['connection refused'] });
    const verdict = await runner.waitUntilHealthy(
      policy({ names: ['web', 'db'], intervalSeconds: 5, healthyDeadlineSeconds: 5 }),
      options(),
    );
    expect(verdict.reason).toBe(
      "http check 'web' failed: HTTP 502 for 5 s; http check 'db' failed: connection refused for 5 s; deadline 5 s",
    );
  });

  it('is unhealthy at the deadline when the streak is still too short', async () => {
    const { runner, options } = setup({ web: ['HTTP 500', 'HTTP 500', 'HTTP 500', true] });
    const verdict = await runner.waitUntilHealthy(
      policy({ intervalSeconds: 2, minHealthySeconds: 4, healthyDeadlineSeconds: 8 }),
      options(),
    );
    expect(verdict).toMatchObject({
      healthy: false,
      reason: 'checks passing for 2 s of the required 4 s; deadline 8 s',
    });
  });

  it('counts a streak that completes exactly on the deadline', async () => {
    const { runner, elapsed, options } = setup({ web: [true] });
    const verdict = await runner.waitUntilHealthy(
      policy({ intervalSeconds: 3, minHealthySeconds: 10, healthyDeadlineSeconds: 10 }),
      options(),
    );
    // Polls at 0, 3, 6, 9 and on the deadline at 10.
    expect(verdict.healthy).toBe(true);
    expect(elapsed()).toBe(10);
  });

  it('reports every poll through onResults', async () => {
    const { runner, polls, options } = setup({ web: ['HTTP 500', true] });
    await runner.waitUntilHealthy(policy({ intervalSeconds: 1, minHealthySeconds: 1 }), options());
    expect(polls.map((p) => p.map((r) => r.observed))).toEqual([['HTTP 500'], ['fine'], ['fine']]);
  });

  it('fails fast after failAfterConsecutive failing polls in a row, well before the deadline', async () => {
    const { runner, elapsed, failingPolls, options } = setup({ web: ['HTTP 500'] });
    const verdict = await runner.waitUntilHealthy(
      policy({ intervalSeconds: 2, healthyDeadlineSeconds: 60, failAfterConsecutive: 3 }),
      options(),
    );
    // Polls at 0, 2 and 4: the third failing one ends it.
    expect(verdict).toMatchObject({
      healthy: false,
      reason: "http check 'web' failed: HTTP 500 for 4 s; 3 failing polls in a row (failAfterConsecutive)",
    });
    expect(failingPolls).toEqual([1, 2, 3]);
    expect(elapsed()).toBe(4);
  });

  it('counts failing polls in a row: a passing poll starts the count again', async () => {
    const { runner, failingPolls, options } = setup({ web: ['HTTP 500', 'HTTP 500', true, 'HTTP 500', true] });
    const verdict = await runner.waitUntilHealthy(
      policy({ intervalSeconds: 1, minHealthySeconds: 2, healthyDeadlineSeconds: 60, failAfterConsecutive: 3 }),
      options(),
    );
    expect(verdict.healthy).toBe(true);
    expect(failingPolls).toEqual([1, 2, 0, 1, 0, 0, 0]);
  });

  it('fails fast on a single failing poll with failAfterConsecutive: 1, naming one poll', async () => {
    const { runner, options } = setup({ web: ['exit 1'] });
    const verdict = await runner.waitUntilHealthy(policy({ failAfterConsecutive: 1 }), options());
    expect(verdict.reason).toBe("http check 'web' failed: exit 1; 1 failing poll in a row (failAfterConsecutive)");
  });

  it('waits out the deadline without failAfterConsecutive (the default)', async () => {
    const { runner, elapsed, options } = setup({ web: ['HTTP 500'] });
    const verdict = await runner.waitUntilHealthy(
      policy({ intervalSeconds: 10, healthyDeadlineSeconds: 30 }),
      options(),
    );
    expect(verdict.healthy).toBe(false);
    expect(elapsed()).toBe(30);
  });

  it('is healthy at once with no checks', async () => {
    const { runner, clock, probe, options } = setup({});
    const verdict = await runner.waitUntilHealthy(policy({ names: [], minHealthySeconds: 60 }), options());
    expect(verdict).toEqual({ healthy: true, results: [], reason: 'no health checks' });
    expect(clock.sleeps).toEqual([]);
    expect(probe.calls.size).toBe(0);
  });

  it('rejects with the abort reason when aborted while polling', async () => {
    const controller = new AbortController();
    const reason = new Error('order cancelled');
    const { runner, options } = setup({ web: ['HTTP 500'] }, (_name, call) => {
      if (call === 2) controller.abort(reason);
    });
    await expect(runner.waitUntilHealthy(policy({}), options(controller.signal))).rejects.toBe(reason);
  });

  it('rejects with the abort reason when already aborted', async () => {
    const controller = new AbortController();
    const reason = new Error('agent stopping');
    controller.abort(reason);
    const { runner, probe, options } = setup({ web: [true] });
    await expect(runner.waitUntilHealthy(policy({}), options(controller.signal))).rejects.toBe(reason);
    expect(probe.calls.size).toBe(0);
  });

  it('unwraps the abort reason when the clock rejects with its own error', async () => {
    const controller = new AbortController();
    const reason = new Error('order cancelled');
    const clock: Clock = {
      now: () => 0,
      monotonicNow: () => 0,
      sleep: async () => {
        controller.abort(reason);
        throw new DOMException('The operation was aborted', 'AbortError');
      },
    };
    const runner = new HealthRunner(new ScriptedProbe(new FakeClock(), { web: ['HTTP 500'] }), clock);
    await expect(runner.waitUntilHealthy(policy({}), { signal: controller.signal })).rejects.toBe(reason);
  });
});

describe('HealthRunner.watch', () => {
  it('is healthy when every poll passes for the whole duration', async () => {
    const { runner, polls, elapsed, options } = setup({ web: [true] });
    const verdict = await runner.watch(policy({ intervalSeconds: 4 }), 10, options());
    // Polls at 0, 4, 8 and at the end, 10.
    expect(verdict).toMatchObject({ healthy: true, reason: 'all 1 check passed for 10 s of watch' });
    expect(polls).toHaveLength(4);
    expect(elapsed()).toBe(10);
  });

  it('fails on the first failed poll without waiting out the duration', async () => {
    const { runner, polls, elapsed, options } = setup({ web: [true, true, 'HTTP 500', true] });
    const verdict = await runner.watch(policy({ intervalSeconds: 2 }), 60, options());
    expect(verdict).toMatchObject({ healthy: false, reason: "http check 'web' failed: HTTP 500 after 4 s of watch" });
    expect(polls).toHaveLength(3);
    expect(elapsed()).toBe(4);
  });

  it('tolerates failing polls below bakeTolerance.consecutiveFailures', async () => {
    const { runner, failingPolls, options } = setup({ web: [true, 'HTTP 500', true, 'HTTP 500', 'HTTP 500', true] });
    const verdict = await runner.watch(
      policy({ intervalSeconds: 2, bakeTolerance: { consecutiveFailures: 3 } }),
      12,
      options(),
    );
    expect(verdict).toMatchObject({ healthy: true, reason: 'all 1 check passed for 12 s of watch' });
    expect(failingPolls).toEqual([0, 1, 0, 1, 2, 0, 0]);
  });

  it('fails once bakeTolerance.consecutiveFailures polls in a row failed', async () => {
    const { runner, elapsed, options } = setup({ web: [true, 'HTTP 500', 'HTTP 502', 'HTTP 503'] });
    const verdict = await runner.watch(
      policy({ intervalSeconds: 2, bakeTolerance: { consecutiveFailures: 3 } }),
      60,
      options(),
    );
    expect(verdict).toMatchObject({
      healthy: false,
      reason: "http check 'web' failed: HTTP 503 for 4 s after 6 s of watch (3 failing polls in a row, bakeTolerance)",
    });
    expect(elapsed()).toBe(6);
  });

  it('is healthy at once with no checks', async () => {
    const { runner, clock, options } = setup({});
    expect(await runner.watch(policy({ names: [] }), 30, options())).toEqual({
      healthy: true,
      results: [],
      reason: 'no health checks',
    });
    expect(clock.sleeps).toEqual([]);
  });

  it('rejects with the abort reason', async () => {
    const controller = new AbortController();
    const reason = new Error('rollout aborted');
    const { runner, options } = setup({ web: [true] }, (_name, call) => {
      if (call === 1) controller.abort(reason);
    });
    await expect(runner.watch(policy({}), 60, options(controller.signal))).rejects.toBe(reason);
  });
});
