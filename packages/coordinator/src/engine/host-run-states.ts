import type { HostChanged, HostRunState } from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';

/** Host runs with an order out that has not finished. */
export const IN_FLIGHT_HOST_STATES: readonly HostRunState[] = [
  'dispatched',
  'delivered',
  'snapshotted',
  'applying',
  'verifying',
];

export const TERMINAL_HOST_STATES: ReadonlySet<HostRunState> = new Set([
  'healthy',
  'failed',
  'timed_out',
  'skipped',
  'not_applicable',
  'cancelled',
  'reverted',
  'revert_failed',
]);

/** Forward order of in-flight phases: progress never moves a host backwards. */
export const HOST_PHASE_ORDER: Readonly<Partial<Record<HostRunState, number>>> = {
  queued: 0,
  dispatched: 1,
  delivered: 2,
  snapshotted: 3,
  applying: 4,
  verifying: 5,
};

/** Where an apply order's result (or the deadline) takes a host that had it in flight. */
const APPLY_ENDS = [
  'healthy',
  'failed',
  'skipped',
  'not_applicable',
  'cancelled',
  'revert_failed',
  'timed_out',
] as const;

/**
 * Every legal host-run transition, in one table (the rollout's is `ROLLOUT_TRANSITIONS`);
 * `transitionHostRun` is the only writer and checks every write against it. A host run is born
 * `queued` (when its rollout starts); a write that leaves the state as it is (a late result that only
 * says whether the host carries the change) is not a transition and is not listed.
 */
export const HOST_RUN_TRANSITIONS: Readonly<Record<HostRunState, readonly HostRunState[]>> = {
  // Dispatched, or settled at dispatch by the offline policy (skip, fail).
  queued: ['dispatched', 'failed', 'skipped'],
  // Progress only moves forward; any in-flight phase may end in a result or time out. An order still
  // waiting for its host goes back in the queue when its maintenance window closes.
  dispatched: ['queued', 'delivered', 'snapshotted', 'applying', 'verifying', ...APPLY_ENDS],
  delivered: ['snapshotted', 'applying', 'verifying', ...APPLY_ENDS],
  snapshotted: ['applying', 'verifying', ...APPLY_ENDS],
  applying: ['verifying', ...APPLY_ENDS],
  verifying: [...APPLY_ENDS],
  // The bake watch saw health fail after the host reported healthy (it self-reverted, or could not).
  healthy: ['failed', 'revert_failed', 'reverting'],
  // An explicit retry requeues these; any of them may still carry the change and be reverted.
  failed: ['queued', 'reverting'],
  timed_out: ['queued', 'reverting'],
  skipped: ['queued', 'reverting'],
  // Nothing was changed, so nothing to revert; a retry asks the host again (it may have the package now).
  not_applicable: ['queued'],
  cancelled: ['queued', 'reverting'],
  reverting: ['reverted', 'revert_failed'],
  // A late apply result showed the host changed after all: a whole-rollout revert sends it another.
  reverted: ['reverting'],
  // A revert given up on (timed out) may still report success; a person's revert tries it again.
  revert_failed: ['reverted', 'reverting'],
};

export function canTransitionHostRun(from: HostRunState, to: HostRunState): boolean {
  return HOST_RUN_TRANSITIONS[from].includes(to);
}

/**
 * What the views say a host carries: what its agent last reported, except for a host timed out
 * with an order out that has not answered — the agent may have died mid-dpkg, so "no" would be a
 * guess. Unknown until its result (or a hello that does not list the order) arrives.
 */
export function reportedChange(run: Pick<HostRunRecord, 'state' | 'answered' | 'orderId' | 'changed'>): HostChanged {
  if (run.state === 'timed_out' && !run.answered && run.orderId !== null) return 'unknown';
  return run.changed;
}
