import { type NewPatchInput, storedPatch } from '@fleetpatch/shared';
import { SAMPLE_PATCH_SPEC } from './sample-patch.js';
import { SimulatedFleet, T0 } from './simulated-fleet.js';

export const SET_PATCH = 'pat_set';
export const SOURCE_PATCH = 'pat_source';
export const ONE_PACKAGE_PATCH = 'pat_one';

/** A simulated fleet whose store also holds an explicit package set, a source change and a one-package change. */
export async function fleetWithPackagePatches(): Promise<SimulatedFleet> {
  const fleet = await SimulatedFleet.open();
  const patch = (id: string, change: unknown) =>
    storedPatch({ ...SAMPLE_PATCH_SPEC, change } as NewPatchInput, {
      id,
      createdBy: 'alice',
      createdAt: new Date(T0).toISOString(),
    });
  await fleet.store.transaction(async () => {
    await fleet.store.patches.insert(
      patch(SET_PATCH, {
        kind: 'package',
        manager: 'apt',
        packages: [
          { name: 'libfoo1', version: '1.2-1' },
          { name: 'foo-bin', version: '1.2-1' },
        ],
      }),
    );
    await fleet.store.patches.insert(
      patch(ONE_PACKAGE_PATCH, { kind: 'package', manager: 'apt', name: 'tzdata', version: '2025b-0+deb12u1' }),
    );
    await fleet.store.patches.insert(
      patch(SOURCE_PATCH, { kind: 'package', manager: 'apt', source: 'openssl', version: '3.0.15-1~deb12u1' }),
    );
  });
  return fleet;
}
