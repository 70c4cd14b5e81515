import { ErrorCode } from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { EngineDeps } from './engine-interfaces.js';
import { transitionHostRun } from './host-run-transition.js';
import { SYSTEM } from './rollout-transition.js';

/**
 * The host's agent speaks a protocol too old for the patch's change: it is sent nothing (it would
 * refuse the order) and fails, counted, with the reason; after the agent is upgraded, `retry` asks
 * again. Inside the caller's transaction.
 */
export async function failTooOld(
  deps: Pick<EngineDeps, 'store' | 'clock'>,
  run: HostRunRecord,
  reason: string,
): Promise<void> {
  await transitionHostRun(
    deps,
    run,
    {
      to: 'failed',
      countedFailure: true,
      finishedAt: deps.clock.now(),
      errorCode: ErrorCode.preconditionFailed,
      reason,
    },
    { actor: SYSTEM, data: { reason: 'agent_protocol_too_old', detail: reason } },
  );
}
