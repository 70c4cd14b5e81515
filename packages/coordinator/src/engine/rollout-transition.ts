import { ErrorCode, FINAL_ROLLOUT_STATES, FleetError, type RolloutState } from '@fleetpatch/shared';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { Store } from '../store/store.js';
import type { EngineClock, EngineDeps } from './engine-interfaces.js';
import { assertTransition } from './rollout-states.js';

/** Actor name recorded for transitions the engine makes by itself. */
export const SYSTEM = 'system';

/** A rollout paused by its maintenance window resumes by itself; one paused by a person does not. */
export const WINDOW_PAUSE_REASON = 'maintenance window closed';

/** The time stamp written with rows and events. */
export function isoNow(clock: EngineClock): string {
  return new Date(clock.now()).toISOString();
}

export async function mustGetRollout(store: Store, id: string): Promise<RolloutRecord> {
  const rollout = await store.rollouts.get(id);
  if (!rollout) throw new FleetError(ErrorCode.notFound, `rollout ${id} does not exist`);
  return rollout;
}

/**
 * Must run inside a transaction. Moves a rollout to `to` with its event, updates `rollout.state` in
 * place (callers keep using the record), and arms or drops the rollout's window watch.
 */
export async function transitionRollout(
  deps: Pick<EngineDeps, 'store' | 'clock' | 'windows'>,
  rollout: RolloutRecord,
  to: RolloutState,
  actor: string,
  reason: string | null,
  data?: Record<string, unknown>,
): Promise<void> {
  const { store, clock, windows } = deps;
  assertTransition(rollout.id, rollout.state, to, `move to ${to}`);
  // Written only from the state this decision was made on: in a coordinator group whose step lock was
  // lost mid-step (its session cut), another member may have moved the rollout meanwhile; its
  // transition stands, and this one (with the rest of its transaction) is refused.
  if (
    !(await store.rollouts.setState(rollout.id, to, reason, FINAL_ROLLOUT_STATES.has(to), isoNow(clock), rollout.state))
  ) {
    // Rollouts are never deleted: the row is there, in the state the other writer left it.
    const now = (await mustGetRollout(store, rollout.id)).state;
    throw new FleetError(
      ErrorCode.illegalTransition,
      `cannot move to ${to} a rollout that is no longer ${rollout.state}: it is ${now} (changed meanwhile)`,
      { rolloutId: rollout.id, state: now, wanted: to },
    );
  }
  await store.appendEvent(
    {
      rolloutId: rollout.id,
      actor,
      type: `rollout.${to}`,
      fromState: rollout.state,
      toState: to,
      data: { ...(reason ? { reason } : {}), ...data },
    },
    isoNow(clock),
  );
  const from = rollout.state;
  rollout.state = to;
  // Window watches only wake the engine, so arming one in a transaction that rolls back is harmless.
  const window = rollout.request.window;
  if (FINAL_ROLLOUT_STATES.has(to) || to === 'reverting') windows?.unwatch(rollout.id);
  else if (window && FINAL_ROLLOUT_STATES.has(from)) windows?.watch(rollout.id, window);
}
