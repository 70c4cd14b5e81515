import type { Patch, RolloutRequest } from '@fleetpatch/shared';

/**
 * Why a rollout's `hostTimeoutSeconds` is too short for its patch's health policy, or undefined when
 * it fits. The agent gives a host up to `healthyDeadlineSeconds` to pass its checks, polling every
 * `intervalSeconds`; the coordinator times out (and cancels: the agent restores its snapshot) a host
 * with no result after `hostTimeoutSeconds`. A timeout shorter than the health deadline plus one poll
 * would fail a host the agent could still find healthy. Refused at create rather than stretched while
 * the host verifies: when a host cut off mid-verify is timed out stays what `hostTimeoutSeconds` says.
 * A patch without checks is judged healthy at once, so any timeout fits it. A rollout that rehearses
 * its revert has its canaries pass their checks three times within one order (after the apply, after
 * the rehearsed revert, after the apply again): three deadlines and their polls must fit.
 */
export function healthOutlastsHostTimeout(
  patch: Pick<Patch, 'id' | 'health'>,
  request: Pick<RolloutRequest, 'hostTimeoutSeconds' | 'rehearseRevert'>,
): string | undefined {
  const { checks, healthyDeadlineSeconds, intervalSeconds } = patch.health;
  if (checks.length === 0) return undefined;
  const runs = request.rehearseRevert ? 3 : 1;
  const needed = runs * (healthyDeadlineSeconds + intervalSeconds);
  if (request.hostTimeoutSeconds >= needed) return undefined;
  const what = request.rehearseRevert
    ? 'with rehearseRevert a canary passes its checks three times (after the apply, after the rehearsed revert, ' +
      'after the apply again), and each health deadline plus one interval must fit in hostTimeoutSeconds'
    : "the patch's health deadline plus one interval must fit in hostTimeoutSeconds";
  return (
    `must be at least ${needed} (got ${request.hostTimeoutSeconds}): patch ${patch.id} gives each host up to ` +
    `healthyDeadlineSeconds ${healthyDeadlineSeconds}s to pass its health checks, polled every intervalSeconds ` +
    `${intervalSeconds}s; ${what}, or a host still verifying would be timed out and reverted`
  );
}
