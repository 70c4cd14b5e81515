import type { HostRunRecord } from '../store/host-run-repository.js';
import type { RolloutRecord } from '../store/rollout-repository.js';
import type { EngineDeps } from './engine-interfaces.js';
import { IN_FLIGHT_HOST_STATES } from './host-run-states.js';
import { transitionHostRun } from './host-run-transition.js';
import { newId } from './ids.js';
import { sendRevert } from './order-sender.js';
import { signedRevertOf } from './rollout-signing.js';
import { mustGetRollout, SYSTEM, transitionRollout } from './rollout-transition.js';

/** Revert progression: revert orders to hosts that carry the change, and the rollout's revert outcome. */
export class RevertRunner {
  constructor(private readonly deps: Pick<EngineDeps, 'store' | 'channel' | 'clock' | 'windows' | 'isStopped'>) {}

  /** Sends revert orders while slots are free; when none is left to send or answer, ends the revert. */
  async advance(rollout: RolloutRecord): Promise<void> {
    const { store } = this.deps;
    // Counts and a bounded query: called after every burst of results, so never a scan of every host.
    // Only states hosts pass through: a count of a terminal one would read every host run ever in it.
    const counts = await store.hostRuns.countInStates(rollout.id, [...IN_FLIGHT_HOST_STATES, 'reverting']);
    const inFlight = IN_FLIGHT_HOST_STATES.reduce((n, s) => n + (counts.get(s) ?? 0), 0);
    const reverting = counts.get('reverting') ?? 0;
    const slots = rollout.request.revertParallel - reverting;
    const candidates = slots > 0 ? await store.hostRuns.revertCandidates(rollout.id, slots) : [];
    if (candidates.length > 0) {
      await store.transaction(async () => {
        for (const run of candidates) await this.dispatch(run);
      });
      return;
    }
    if (reverting > 0 || inFlight > 0) return;
    // Once, at the end: this rollout's own index entries (countByWaveAndState), not the state index.
    const failed = (await store.hostRuns.countByWaveAndState(rollout.id))
      .filter((count) => count.state === 'revert_failed')
      .reduce((n, count) => n + count.n, 0);
    await store.transaction(async () => {
      const current = await mustGetRollout(store, rollout.id);
      if (current.state !== 'reverting') return;
      if (failed > 0)
        await transitionRollout(this.deps, current, 'revert_failed', SYSTEM, `${failed} host(s) failed to revert`);
      else await transitionRollout(this.deps, current, 'reverted', SYSTEM, null);
    });
  }

  /**
   * Must run inside a transaction; the order is sent once it commits (never if it rolls back). A
   * signed rollout's host is reverted only under a used revert statement covering it (else this
   * throws and the transaction rolls back): an unsigned revert would only be refused.
   */
  async dispatch(run: HostRunRecord): Promise<void> {
    const { store, channel, clock } = this.deps;
    if (!run.orderId) return;
    const signed = await signedRevertOf(store, run.rolloutId, run.hostId);
    const orderId = newId('rev');
    await transitionHostRun(
      this.deps,
      run,
      { to: 'reverting', revertOrderId: orderId, at: clock.now() },
      { actor: SYSTEM, data: { orderId } },
    );
    const sent = { ...run, state: 'reverting' as const, revertOrderId: orderId };
    store.afterCommit(() => {
      if (!this.deps.isStopped()) sendRevert(channel, sent, signed);
    });
  }

  /**
   * Must run inside a transaction. A host timed out (its answer lost to a partition, say) counts as
   * unchanged; when its late result says it carries the change after the rollout was reverted, the
   * rollout is not reverted after all: it goes back to reverting and that host gets a revert order.
   */
  async reopenRevert(rolloutId: string): Promise<void> {
    const rollout = await this.deps.store.rollouts.get(rolloutId);
    if (rollout?.state === 'reverted')
      await transitionRollout(
        this.deps,
        rollout,
        'reverting',
        SYSTEM,
        'a late result shows a host still carries the change',
      );
  }

  /** Must run inside a transaction. A late successful revert may turn a revert_failed rollout into reverted. */
  async reopenFailedRevert(rolloutId: string): Promise<void> {
    const rollout = await this.deps.store.rollouts.get(rolloutId);
    if (rollout?.state === 'revert_failed')
      await transitionRollout(this.deps, rollout, 'reverting', SYSTEM, 'a late revert result arrived');
  }
}
