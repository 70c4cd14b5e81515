import type { RolloutRequestInput } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect } from 'vitest';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { samplePatch } from '../../scripts/lib/sample-specs.mjs';
import { FaultFleet, type FaultFleetOptions } from './fault-fleet.js';

/**
 * The workload of the fault scenarios: a file patch over a fault fleet, optionally held in its
 * verify phase by a local file health check (`holdSeconds`), which gives "mid-apply" a window: the
 * file is written, the order not finished. The check is the agent's own, so a host cut off from the
 * coordinator still finishes it.
 */
export async function createFilePatch(
  fleet: FaultFleet,
  path: string,
  content: string,
  holdSeconds = 0,
): Promise<string> {
  const health =
    holdSeconds > 0
      ? {
          health: {
            // Passes before the patch and after: it only holds the order in verify for `holdSeconds`.
            checks: [{ kind: 'file' as const, name: 'config present', path }],
            intervalSeconds: 0.5,
            minHealthySeconds: holdSeconds,
            // The health deadline plus one poll must fit in the rollout's hostTimeoutSeconds (the coordinator
            // refuses the rollout otherwise): the shortest a scenario gives a held host is 6 s, holding 3.
            healthyDeadlineSeconds: holdSeconds + 2.5,
          },
        }
      : {};
  return fleet.fleet.createPatch(samplePatch({ title: `Set ${path} (fault suite)`, path, content, ...health }));
}

/** Starts a rollout of `patchId` over every host of the fleet; `request` overrides the defaults. */
export function startFleetRollout(
  fleet: FaultFleet,
  patchId: string,
  request: Partial<RolloutRequestInput> = {},
): Promise<string> {
  return fleet.fleet.startRollout({
    patchId,
    target: { hostIds: [...fleet.hostIds] },
    waves: ['100%'],
    maxParallel: 50,
    requiredApprovals: 0,
    ...request,
  });
}

/**
 * A fault fleet for the tests of one `describe`: started before them, torn down after them whatever
 * they did (and checked to leave no namespace or link behind). Returns the fleet's getter. A start
 * that outlives its hook's timeout is still torn down: the teardown waits for it to end first.
 */
export function useFaultFleet(
  options: FaultFleetOptions | (() => FaultFleetOptions | Promise<FaultFleetOptions>),
): () => FaultFleet {
  let starting: Promise<FaultFleet> | undefined;
  let fleet: FaultFleet | undefined;
  beforeAll(async () => {
    starting = (async () => FaultFleet.start(typeof options === 'function' ? await options() : options))();
    fleet = await starting;
  });
  afterAll(async () => {
    // A timed-out start goes on in the background; whatever it started is the fleet to tear down.
    const started = fleet ?? (await starting?.catch(() => undefined));
    await started?.teardown();
    expect(started?.leftovers() ?? []).toEqual([]);
  });
  return () => {
    if (!fleet) throw new Error('the fault fleet did not start');
    return fleet;
  };
}

/** Waits until `path`'s content is `content` on every host of `ids` (the order is on them, mid-apply). */
export function waitForContent(fleet: FaultFleet, ids: readonly string[], content: string): Promise<true> {
  return waitFor(
    `${content.trim()} on ${ids.join(', ')}`,
    async () => (await Promise.all(ids.map((id) => fleet.readFileOf(id)))).every((c) => c === content) || undefined,
    { timeoutMs: 30_000 },
  );
}
