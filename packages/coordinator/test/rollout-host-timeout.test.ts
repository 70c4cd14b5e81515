/**
 * Specification of the rollout engine, by example: the coordinator's deadline for a host against the
 * time the patch itself gives the host to become healthy.
 */
import { ErrorCode, type PatchSpecInput, storedPatch } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { refusal } from './support/refusal.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { SimulatedFleet } from './support/simulated-fleet.js';

/** A patch whose service warms up slowly: each host has up to 30 min to pass its checks, polled every 10 s. */
const SLOW_TO_WARM: PatchSpecInput = {
  ...SAMPLE_PATCH_SPEC,
  health: {
    checks: [{ kind: 'http', url: 'http://127.0.0.1:8080/health' }],
    intervalSeconds: 10,
    healthyDeadlineSeconds: 1800,
  },
};

async function fleetWith(spec: PatchSpecInput): Promise<SimulatedFleet> {
  const fleet = await SimulatedFleet.open();
  const patch = storedPatch(spec, { id: 'pat_slow', createdBy: 'alice', createdAt: new Date(fleet.now).toISOString() });
  await fleet.store.transaction(async () => await fleet.store.patches.insert(patch));
  await fleet.addHosts(['host-1']);
  return fleet;
}

describe('a patch whose health checks may take longer than the rollout waits', () => {
  // A rollout whose hostTimeoutSeconds (default 600) is shorter than the patch's health deadline would
  // time out, cancel and revert every host still verifying within that deadline: refused at create.
  // (A verifying host is not given the patch's deadline on top: the fault suite's partitions rely on
  // a host cut off mid-verify timing out at hostTimeoutSeconds.)
  it('is refused at create, a 400 naming hostTimeoutSeconds, and nothing is written', async () => {
    const fleet = await fleetWith(SLOW_TO_WARM);
    const before = await fleet.dump();

    const err = await refusal(() => fleet.create({ patchId: 'pat_slow', waves: ['100%'] }));

    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.details).toMatchObject({
      path: 'body.hostTimeoutSeconds',
      issues: [{ path: 'body.hostTimeoutSeconds' }],
    });
    expect(err.message).toBe(
      'invalid request: body.hostTimeoutSeconds: must be at least 1810 (got 600): patch pat_slow gives each host up ' +
        'to healthyDeadlineSeconds 1800s to pass its health checks, polled every intervalSeconds 10s; the ' +
        "patch's health deadline plus one interval must fit in hostTimeoutSeconds, or a host still verifying " +
        'would be timed out and reverted',
    );
    expect(await fleet.dump()).toBe(before);
  });

  it('is accepted once hostTimeoutSeconds covers the health deadline and one poll', async () => {
    const fleet = await fleetWith(SLOW_TO_WARM);
    expect(await refusal(() => fleet.create({ patchId: 'pat_slow', hostTimeoutSeconds: 1809 }))).toMatchObject({
      code: ErrorCode.validationFailed,
    });
    const { state } = await fleet.create({ patchId: 'pat_slow', hostTimeoutSeconds: 1810 });
    expect(state).toBe('scheduled');
  });

  it('with rehearseRevert, covers three health deadlines and their polls: a canary checks after the apply, the rehearsed revert and the apply again', async () => {
    const fleet = await fleetWith(SLOW_TO_WARM);
    const before = await fleet.dump();
    const err = await refusal(() =>
      fleet.create({ patchId: 'pat_slow', rehearseRevert: true, hostTimeoutSeconds: 3 * 1810 - 1 }),
    );
    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.details).toMatchObject({ path: 'body.hostTimeoutSeconds' });
    expect(err.message).toContain('must be at least 5430 (got 5429)');
    expect(err.message).toContain('with rehearseRevert a canary passes its checks three times');
    expect(await fleet.dump()).toBe(before);
    const { state } = await fleet.create({ patchId: 'pat_slow', rehearseRevert: true, hostTimeoutSeconds: 3 * 1810 });
    expect(state).toBe('scheduled');
  });

  it('is any timeout for a patch without health checks: it is judged healthy at once', async () => {
    const fleet = await fleetWith({ ...SAMPLE_PATCH_SPEC, health: { checks: [], healthyDeadlineSeconds: 7200 } });
    const { state } = await fleet.create({ patchId: 'pat_slow', hostTimeoutSeconds: 1 });
    expect(state).toBe('scheduled');
  });
});
