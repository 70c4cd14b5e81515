import type { OrderApply, OrderRevert, Patch } from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { Store } from '../store/store.js';
import { applyOrders } from './apply-frames.js';
import type { AgentChannel, EngineDeps } from './engine-interfaces.js';
import { IN_FLIGHT_HOST_STATES } from './host-run-states.js';
import type { OwedCancels } from './owed-cancels.js';
import { signedApplyOf, signedRevertOf } from './rollout-signing.js';

/*
 * The orders sent to agents, built from committed host runs. Callers send only after the commit that
 * recorded the order id, so a resend is always of an order the agent can answer from its journal.
 * A signed rollout's orders carry what people signed (`signed`, see rollout-signing.ts), untouched.
 */

/**
 * Sends the apply orders of committed host runs: one batch of hosts, one serialization of what they
 * share (see apply-frames.ts); a run without an order id is skipped.
 */
export function sendApplies(
  channel: AgentChannel,
  rollout: RolloutRecord,
  runs: readonly HostRunRecord[],
  patch: Patch,
  signed: OrderApply['signed'],
  afterEach?: () => void,
): void {
  // The canary wave of a rollout that rehearses its revert is told so: at most two bodies per batch.
  const bodies = new Map<boolean, (orderId: string) => OrderApply>();
  const ordersFor = (rehearse: boolean) => {
    let orders = bodies.get(rehearse);
    if (orders === undefined) {
      orders = applyOrders({
        rolloutId: rollout.id,
        patchId: patch.id,
        change: patch.change,
        health: patch.health,
        failIfUnhealthyBefore: rollout.request.failUnhealthyBefore,
        revertOnHealthFailure: rollout.request.autoRevert !== 'none',
        bakeSeconds: rollout.request.bakeSeconds,
        ...(rehearse ? { rehearseRevert: true } : {}),
        ...(signed ? { signed } : {}),
      });
      bodies.set(rehearse, orders);
    }
    return orders;
  };
  for (const run of runs) {
    if (!run.orderId) continue;
    channel.send(run.hostId, ordersFor(rehearsesRevert(rollout, run))(run.orderId));
    afterEach?.();
  }
}

/** Whether this host rehearses its revert: a host of the canary wave of a rollout that asks for it. */
export function rehearsesRevert(rollout: Pick<RolloutRecord, 'request'>, run: Pick<HostRunRecord, 'wave'>): boolean {
  return rollout.request.rehearseRevert && run.wave === 0;
}

export function sendRevert(channel: AgentChannel, run: HostRunRecord, signed: OrderRevert['signed']): void {
  if (!run.revertOrderId || !run.orderId) return;
  channel.send(run.hostId, {
    type: 'order.revert',
    orderId: run.revertOrderId,
    revertsOrderId: run.orderId,
    ...(signed ? { signed } : {}),
  });
}

/**
 * A wave passed and bakes now: its healthy hosts keep watching their health for the whole bake
 * (not just for bakeSeconds after their own result, which for the wave's early finishers ends sooner).
 */
export async function sendBakeWatch(
  store: Store,
  channel: AgentChannel,
  rollout: RolloutRecord,
  wave: number,
): Promise<void> {
  if (rollout.request.bakeSeconds <= 0) return;
  for (const run of await store.hostRuns.forWave(rollout.id, wave)) {
    if (run.state === 'healthy' && run.changed && run.orderId) {
      channel.send(run.hostId, { type: 'order.watch', orderId: run.orderId, seconds: rollout.request.bakeSeconds });
    }
  }
}

/**
 * How much longer than bakeSeconds after its wave's last result a host's bake watch may run: the
 * wave passes (and sends order.watch) a moment after that result, and in a coordinator group an
 * order.watch may wait in the outbox (up to its 10 minutes) for the agent to connect somewhere.
 */
const WATCH_MAY_OUTLAST_BAKE_MS = 10 * 60_000;

/**
 * The rollout succeeded: the agents still watching a bake stop now (on an agent, order.cancel of a
 * done apply order only ends its watch). A watch outlives the coordinator's bake when the bake was
 * promoted, and by a moment at its normal end (the agent's watch started when order.watch reached
 * it); left running, it could revert a host under a rollout that says `succeeded`. Sent only to the
 * healthy hosts that carry the change and whose watch may still run: an agent watches for
 * bakeSeconds from its own result and again from its wave's pass, so a wave whose last result came
 * longer ago than that (and the slack) is left alone, as is a rollout without a bake.
 */
export async function endBakeWatches(
  store: Store,
  channel: AgentChannel,
  rollout: RolloutRecord,
  now: number,
  owed: OwedCancels,
): Promise<void> {
  owed.prune(now);
  if (rollout.request.bakeSeconds <= 0) return;
  const runs = await store.hostRuns.forRollout(rollout.id);
  const lastResultOfWave = new Map<number, number>();
  for (const { wave, finishedAt } of runs) {
    if (finishedAt !== null) lastResultOfWave.set(wave, Math.max(lastResultOfWave.get(wave) ?? finishedAt, finishedAt));
  }
  const watchMayRunFor = rollout.request.bakeSeconds * 1000 + WATCH_MAY_OUTLAST_BAKE_MS;
  for (const run of runs) {
    if (run.state !== 'healthy' || !run.changed || !run.orderId) continue;
    const until = (lastResultOfWave.get(run.wave) ?? now) + watchMayRunFor;
    if (now >= until) continue;
    // An agent not connected now is sent it after its next hello (ReportRecorder.resendAfterHello).
    if (!channel.send(run.hostId, { type: 'order.cancel', orderId: run.orderId }))
      owed.owe(run.hostId, run.orderId, until);
  }
}

/**
 * Sends again every order of a rollout still out: its applies in flight (while the rollout runs or
 * is paused) and its reverts. For a coordinator that takes a rollout over from one that died: what
 * that one sent may never have reached the agent. Agents answer an order they know from their journal.
 * An order still waiting for its host is not sent while the rollout's window is closed (as at a hello).
 */
export async function resendInFlight(
  deps: Pick<EngineDeps, 'store' | 'channel' | 'log' | 'clock' | 'waveGate'>,
  rolloutId: string,
): Promise<void> {
  const { store, channel } = deps;
  const rollout = await store.rollouts.get(rolloutId);
  if (!rollout) return;
  const { window } = rollout.request;
  const windowClosed = window !== undefined && !deps.waveGate(window, deps.clock.now());
  const runs = await store.hostRuns.inStates(rolloutId, [...IN_FLIGHT_HOST_STATES, 'reverting']);
  const applying = runs.filter(
    (run) =>
      run.state !== 'reverting' &&
      run.orderId &&
      !(windowClosed && run.state === 'dispatched' && run.deliveredAt === null),
  );
  if (applying.length > 0 && (rollout.state === 'running' || rollout.state === 'paused')) {
    const patch = (await store.patches.get(rollout.patchId)) as Patch;
    const signed = await signedApplyOf(store, rolloutId);
    sendApplies(channel, rollout, applying, patch, signed);
  }
  for (const run of runs.filter((r) => r.state === 'reverting')) {
    try {
      sendRevert(channel, run, await signedRevertOf(store, rolloutId, run.hostId));
    } catch (err) {
      deps.log.error({ err, rolloutId, hostId: run.hostId }, 'revert order not resent');
    }
  }
}

/** Cancels every apply of a rollout still in flight. */
export async function cancelInFlight(store: Store, channel: AgentChannel, rolloutId: string): Promise<void> {
  for (const run of await store.hostRuns.inStates(rolloutId, IN_FLIGHT_HOST_STATES)) {
    if (run.orderId) channel.send(run.hostId, { type: 'order.cancel', orderId: run.orderId });
  }
}
