import {
  type ApplyStatement,
  applyStatementFor,
  type InstalledPackage,
  patchSpecOf,
  type RolloutRequestInput,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { RolloutView } from '../../src/engine/rollout-view.js';
import { SimulatedFleet } from './simulated-fleet.js';
import type { StatementSigner } from './statement-signer.js';

/** How long the statements of `signedFleet` are valid, in ms. */
export const HOUR_STATEMENT = 3600_000;

export interface SignedFleetOptions extends Partial<RolloutRequestInput> {
  /** Whether bob approves (with his key) when the rollout needs an approval; default true. */
  approve?: boolean;
  /** Where the engine logs (silent unless given). */
  log?: Logger;
  /** Package inventories the hosts have reported before the rollout is created (for `exposedTo`). */
  inventories?: Record<string, InstalledPackage[]>;
}

/**
 * A simulated fleet of `hostIds` (labelled role=web) and a rollout of its patch that alice created
 * as a draft, signed as the CLI does (the statement built from the plan, valid for an hour from the
 * fleet's clock) and submitted, in one wave unless said; with `requiredApprovals` (1 unless said) bob approves it with his key.
 */
export async function signedFleet(
  hostIds: readonly string[],
  signers: { alice: StatementSigner; bob?: StatementSigner },
  { approve = true, log, inventories = {}, ...input }: SignedFleetOptions = {},
): Promise<{ fleet: SimulatedFleet; id: string; statement: ApplyStatement }> {
  const fleet = await SimulatedFleet.open(log ? { log } : {});
  await fleet.addHosts(hostIds, { labels: { role: 'web' } });
  for (const [hostId, packages] of Object.entries(inventories)) await fleet.reportInventory(hostId, packages);
  const rollout = await fleet.create({ requiredApprovals: 1, waves: ['100%'], ...input, draft: true }, 'alice');
  const planned = (await new RolloutView(fleet.store, () => true).plan(rollout.id)).waves.flatMap((w) => w.hosts);
  const patch = await fleet.store.patches.get(rollout.patchId);
  if (!patch) throw new Error('the fleet has no patch');
  const statement = applyStatementFor(patchSpecOf(patch), rollout.request, planned, {
    now: new Date(fleet.now),
    validForSeconds: HOUR_STATEMENT / 1000,
  });
  await fleet.engine.attachStatement(rollout.id, signers.alice.submission(statement), 'alice');
  await fleet.engine.submit(rollout.id, 'alice');
  if (approve && rollout.request.requiredApprovals > 0 && signers.bob) {
    await fleet.engine.approve(rollout.id, 'bob', signers.bob.approval(statement));
  }
  return { fleet, id: rollout.id, statement };
}
