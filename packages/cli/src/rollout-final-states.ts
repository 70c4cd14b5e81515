import type { RolloutState } from '@fleetpatch/shared';

/** Rollout states after which nothing more happens unless a human acts. */
export const FINAL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set([
  'succeeded',
  'halted',
  'aborted',
  'reverted',
  'revert_failed',
]);

/** Final states that mean the operator got what they asked for. */
export const SUCCESSFUL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set(['succeeded', 'reverted']);
