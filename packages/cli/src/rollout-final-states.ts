import type { RolloutState } from '@fleetpatch/shared';

export { FINAL_ROLLOUT_STATES } from '@fleetpatch/shared';

/** Final states that mean the operator got what they asked for. */
export const SUCCESSFUL_ROLLOUT_STATES: ReadonlySet<RolloutState> = new Set(['succeeded', 'reverted']);
