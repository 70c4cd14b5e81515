import { ErrorCode } from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import { DRIVEN_STATES, type EngineDeps } from './engine-interfaces.js';
import { IN_FLIGHT_HOST_STATES } from './host-run-states.js';
import { transitionHostRun } from './host-run-transition.js';
import { SYSTEM } from './rollout-transition.js';

interface Expiry {
  run: HostRunRecord;
  state: 'timed_out' | 'revert_failed';
  reason: string;
}

/**
 * Hosts past their deadline, in every rollout (halted and aborted ones too: their in-flight hosts
 * still finish or time out): not delivered in time (offline, policy wait: measured from dispatch), no
 * result in time (measured from delivery), or no answer to a revert order. Reads only dispatched hosts
 * in flight, through the state index.
 */
export async function expireDeadlines(
  deps: Pick<EngineDeps, 'store' | 'channel' | 'clock' | 'markDirty' | 'drives' | 'grace'>,
): Promise<void> {
  const { store, channel, clock } = deps;
  const now = clock.now();
  const expired = await findExpired(deps, now);
  if (expired.length === 0) return;
  await store.transaction(async () => {
    for (const { run, state, reason } of expired) {
      await transitionHostRun(
        deps,
        run,
        {
          to: state,
          ...(state === 'timed_out' ? { countedFailure: true } : {}),
          finishedAt: now,
          errorCode: state === 'timed_out' ? ErrorCode.timedOut : ErrorCode.revertFailed,
          reason,
        },
        { actor: SYSTEM, data: { reason } },
      );
    }
  });
  for (const { run, state } of expired) {
    // A timed-out apply is cancelled on the agent (it restores its snapshot if it got that far).
    if (state === 'timed_out' && run.orderId) channel.send(run.hostId, { type: 'order.cancel', orderId: run.orderId });
    deps.markDirty(run.rolloutId);
  }
}

/** Rollouts that have a driver in a coordinator group (leased): only it sweeps their hosts. */
const DRIVEN = new Set<string>(DRIVEN_STATES);

async function findExpired(
  { store, drives, grace }: Pick<EngineDeps, 'store' | 'drives' | 'grace'>,
  now: number,
): Promise<Expiry[]> {
  const rollouts = new Map<string, RolloutRecord | undefined>();
  const expired: Expiry[] = [];
  for (const run of await store.hostRuns.inStatesEverywhere([...IN_FLIGHT_HOST_STATES, 'reverting'])) {
    if (!rollouts.has(run.rolloutId)) rollouts.set(run.rolloutId, await store.rollouts.get(run.rolloutId));
    const rollout = rollouts.get(run.rolloutId);
    if (!rollout || run.dispatchedAt === null) continue;
    // Another coordinator of the group drives it (a halted or aborted rollout has no driver: anyone sweeps it).
    if (DRIVEN.has(rollout.state) && !drives(rollout.id)) continue;
    // Just started, and the host has not said hello yet: it may have finished while this coordinator was away.
    if (!grace.allows(run.hostId, now)) continue;
    const { hostTimeoutSeconds, offline } = rollout.request;
    const age = now - run.dispatchedAt;
    if (run.state === 'reverting') {
      if (age > hostTimeoutSeconds * 1000) {
        expired.push({ run, state: 'revert_failed', reason: `no revert result within ${hostTimeoutSeconds}s` });
      }
    } else if (run.state === 'dispatched' && age > offline.deliveryDeadlineSeconds * 1000) {
      expired.push({
        run,
        state: 'timed_out',
        reason: `not delivered within ${offline.deliveryDeadlineSeconds}s (host offline)`,
      });
    } else if (!waitsForItsHost(run) && now - (run.deliveredAt ?? run.dispatchedAt) > hostTimeoutSeconds * 1000) {
      expired.push({ run, state: 'timed_out', reason: `no result within ${hostTimeoutSeconds}s` });
    }
  }
  return expired;
}

/**
 * An order that waits for its host (offline at dispatch, policy wait) is judged by its delivery
 * deadline alone, however much longer than hostTimeoutSeconds: the host's time starts when the
 * order reaches it.
 */
function waitsForItsHost(run: HostRunRecord): boolean {
  return run.state === 'dispatched' && run.deliveredAt === null;
}
