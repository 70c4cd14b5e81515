import type { EngineClock, EngineDeps } from './engine-interfaces.js';
import { DRIVEN_STATES } from './engine-interfaces.js';
import { IN_FLIGHT_HOST_STATES } from './host-run-states.js';
import { isoNow, SYSTEM } from './rollout-transition.js';

/**
 * How much further one clock may move than the other between two ticks before the wall clock counts
 * as stepped. NTP slews small errors at under a millisecond a second; a busy event loop delays both
 * clocks alike. A few seconds only a step (NTP after a drift, a VM resumed and resynchronised,
 * `date -s`) makes.
 */
export const CLOCK_STEP_THRESHOLD_MS = 5_000;

/**
 * Notices steps of the coordinator's wall clock. The engine keeps its instants on the wall clock
 * (they are stored, read by people and by other members of a group, and compared with calendars:
 * maintenance windows, `startAt`), so a step would move every running duration with it: forward, host
 * deadlines and bakes end early; back, they wait out the step. At each look it compares how far the
 * wall clock moved with how much time passed (the monotonic clock, never stepped): the difference is
 * the step, which the running work then follows (`followClockStep`).
 */
export class ClockStepWatch {
  private wall: number;
  private monotonic: number;
  /** A step the running work has not followed yet (its transaction failed): added to the next one. */
  private owed = 0;

  private constructor(private readonly clock: Required<EngineClock>) {
    this.wall = clock.now();
    this.monotonic = clock.monotonicNow();
  }

  /** A watch over `clock`, or undefined for a clock without a monotonic reading (a test's fake). */
  static of(clock: EngineClock): ClockStepWatch | undefined {
    return hasMonotonicReading(clock) ? new ClockStepWatch(clock) : undefined;
  }

  /** How far the wall clock was stepped since the last look (either way), or 0: it kept time. */
  step(): number {
    const wall = this.clock.now();
    const monotonic = this.clock.monotonicNow();
    const step = wall - this.wall - (monotonic - this.monotonic) + this.owed;
    this.owed = 0;
    this.wall = wall;
    this.monotonic = monotonic;
    return Math.abs(step) > CLOCK_STEP_THRESHOLD_MS ? step : 0;
  }

  /** The running work could not follow `step` (see `step`): it is reported again at the next look. */
  owe(step: number): void {
    this.owed += step;
  }
}

/** Rollouts that have a driver in a coordinator group (leased): only it moves their work. */
const DRIVEN = new Set<string>(DRIVEN_STATES);

/**
 * The wall clock was stepped by `stepMs`: the instants of running work move with it, in one
 * transaction, so that each still ends as long after it began as it would have — the dispatch and
 * delivery of orders still out (host deadlines), the end of bakes, the start and last measurement of
 * running analyses. Each rollout moved says so in its audit trail (`rollout.clock_stepped`). The rollouts
 * are those whose hosts this coordinator sweeps (`expireDeadlines`) or that it drives.
 */
export async function followClockStep(
  deps: Pick<EngineDeps, 'store' | 'clock' | 'drives' | 'log'>,
  stepMs: number,
): Promise<void> {
  const { store, clock, drives, log } = deps;
  const moved = await store.transaction(async () => {
    const ids = new Set<string>();
    for (const run of await store.hostRuns.inStatesEverywhere([...IN_FLIGHT_HOST_STATES, 'reverting']))
      ids.add(run.rolloutId);
    for (const rollout of await store.rollouts.inStates(['running', 'paused'])) ids.add(rollout.id);
    const moved: string[] = [];
    for (const id of ids) {
      const rollout = await store.rollouts.get(id);
      if (!rollout || (DRIVEN.has(rollout.state) && !drives(id))) continue;
      await store.hostRuns.shiftInFlight(id, stepMs);
      if (rollout.bakeUntil !== null)
        await store.rollouts.setWave(id, rollout.currentWave, rollout.bakeUntil + stepMs, isoNow(clock));
      if (rollout.request.analyses.length > 0) await store.analyses.shiftRunning(id, stepMs);
      await store.appendEvent(
        { rolloutId: id, actor: SYSTEM, type: 'rollout.clock_stepped', data: { stepMs } },
        isoNow(clock),
      );
      moved.push(id);
    }
    return moved;
  });
  log.warn(
    { stepMs, rollouts: moved.length },
    "the coordinator's wall clock was stepped: running deadlines, bakes and analyses moved with it",
  );
}

function hasMonotonicReading(clock: EngineClock): clock is Required<EngineClock> {
  return clock.monotonicNow !== undefined;
}
