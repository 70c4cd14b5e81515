/**
 * Waits on real processes while the wall clock steps (NTP correcting a drifted clock, a VM resumed,
 * `date -s`): what they measure is time that passed, which a step of `Date.now()` is not. The step is
 * made by replacing `Date.now` for the test's duration; timers, like the kernel's monotonic clock,
 * do not move with it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UnitRestartSchema } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { runDetached } from '../src/process/detached-run.js';
import { SystemdServiceManager } from '../src/services/service-manager.js';

const HOUR_MS = 3_600_000;

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-clock-step-'));
});
afterEach(async () => {
  vi.restoreAllMocks();
  await rm(work, { recursive: true, force: true });
});

/** From `afterMs` (real time) on, `Date.now()` reads `stepMs` away from the time it is. */
function stepWallClockAfter(afterMs: number, stepMs: number): void {
  const realNow = Date.now.bind(Date);
  let step = 0;
  vi.spyOn(Date, 'now').mockImplementation(() => realNow() + step);
  setTimeout(() => {
    step = stepMs;
  }, afterMs);
}

describe('a wall clock step', () => {
  it('forward during a detached command (dpkg) does not stop it as timed out', async () => {
    stepWallClockAfter(200, HOUR_MS);
    const result = await runDetached(['sleep', '1'], join(work, 'run'), { timeoutMs: 60_000 });
    // Stopped, dpkg would leave its packages half-installed.
    expect(result).toMatchObject({ exitCode: 0, timedOut: false });
  });

  it('back during a unit restart reports how long it took, as a duration the protocol takes', async () => {
    stepWallClockAfter(100, -HOUR_MS);
    const services = new SystemdServiceManager({ systemctl: ['sh', '-c', 'sleep 0.4', 'systemctl'] });
    const restart = await services.restart('app.service', 'apply', new AbortController().signal);
    expect(restart).toMatchObject({ ok: true });
    expect(restart.ms).toBeGreaterThanOrEqual(300);
    // A negative ms fails UnitRestartSchema: the coordinator closes the socket of an agent whose result
    // (or hello) carries it, and the agent's own journal refuses to load the entry on its next start.
    expect(UnitRestartSchema.safeParse(restart).success).toBe(true);
  });
});
