import { ErrorCode, FleetError, type RolloutState } from '@fleetpatch/shared';

/**
 * Every legal rollout transition, in one table. `assertTransition` is the only check; anything not
 * listed is refused with the current state (HTTP 409), never silently ignored.
 */
export const ROLLOUT_TRANSITIONS: Readonly<Record<RolloutState, readonly RolloutState[]>> = {
  draft: ['awaiting_approval', 'scheduled', 'aborted'],
  awaiting_approval: ['scheduled', 'aborted'],
  scheduled: ['running', 'aborted'],
  running: ['paused', 'succeeded', 'halted', 'aborted', 'reverting'],
  paused: ['running', 'halted', 'aborted', 'reverting'],
  succeeded: ['reverting'],
  halted: ['running', 'aborted', 'reverting'],
  aborted: ['running', 'reverting'],
  reverting: ['reverted', 'revert_failed'],
  // Only the engine takes this edge: a late result shows a host of a reverted rollout still changed.
  reverted: ['reverting'],
  revert_failed: ['reverting'],
};

export function canTransition(from: RolloutState, to: RolloutState): boolean {
  return ROLLOUT_TRANSITIONS[from].includes(to);
}

export function assertTransition(rolloutId: string, from: RolloutState, to: RolloutState, verb: string): void {
  if (!canTransition(from, to)) {
    throw new FleetError(ErrorCode.illegalTransition, `cannot ${verb} a rollout that is ${from}`, {
      rolloutId,
      state: from,
      wanted: to,
    });
  }
}

/** What each human verb may act on and where it leads; every pair is also in ROLLOUT_TRANSITIONS. */
export const VERB_TRANSITIONS = {
  submit: { from: ['draft'], to: 'awaiting_approval' },
  approve: { from: ['awaiting_approval'], to: 'scheduled' },
  start: { from: ['scheduled'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  abort: { from: ['draft', 'awaiting_approval', 'scheduled', 'running', 'paused', 'halted'], to: 'aborted' },
  retry: { from: ['halted', 'aborted'], to: 'running' },
  revert: { from: ['running', 'paused', 'succeeded', 'halted', 'aborted', 'revert_failed'], to: 'reverting' },
} as const satisfies Record<string, { from: readonly RolloutState[]; to: RolloutState }>;
export type Verb = keyof typeof VERB_TRANSITIONS;

export function assertVerb(rolloutId: string, state: RolloutState, verb: Verb): void {
  const allowed: readonly RolloutState[] = VERB_TRANSITIONS[verb].from;
  if (!allowed.includes(state)) {
    throw new FleetError(ErrorCode.illegalTransition, `cannot ${verb} a rollout that is ${state}`, {
      rolloutId,
      state,
      allowedFrom: allowed,
    });
  }
}
