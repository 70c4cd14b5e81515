import { type Clock, isoAt, isRevertable, type PreflightResult } from '@fleetpatch/shared';
import type { Store } from '../store/store.js';
import type { PreflightCollector } from './preflight-collector.js';
import { isSignedRollout } from './rollout-signing.js';
import type { RolloutView } from './rollout-view.js';

export interface RolloutDryRunDeps {
  store: Store;
  view: RolloutView;
  preflights: PreflightCollector;
  clock: Pick<Clock, 'now'>;
}

/**
 * A rollout's dry run: every host of its plan checks the patch's preconditions and says what it would
 * do; nothing changes on the hosts. The one row written is the audit event saying it was asked.
 */
export class RolloutDryRun {
  constructor(private readonly deps: RolloutDryRunDeps) {}

  async run(rolloutId: string, timeoutMs: number, actor: string): Promise<PreflightResult> {
    const { store, view, preflights, clock } = this.deps;
    const plan = await view.plan(rolloutId);
    const rollout = (await view.status(rolloutId)).rollout;
    const patch = await store.patches.get(rollout.patchId);
    if (!patch) throw new Error(`patch ${rollout.patchId} is missing`);
    const results = await preflights.run(
      plan.waves.flatMap((w) => w.hosts),
      {
        change: patch.change,
        signed: await isSignedRollout(store, rolloutId),
        health: patch.health,
        failIfUnhealthyBefore: rollout.request.failUnhealthyBefore,
      },
      timeoutMs,
    );
    const summary: PreflightResult['summary'] = {};
    for (const r of results) summary[r.outcome] = (summary[r.outcome] ?? 0) + 1;
    await store.transaction(
      async () =>
        await store.appendEvent({ rolloutId, actor, type: 'rollout.preflight', data: { summary } }, isoAt(clock)),
    );
    return { rolloutId, revertable: isRevertable(patch.change), summary, results };
  }
}
