/**
 * Specification of the promotion order (staging before production), by example: the real engine over
 * a real store, driven through the simulated fleet, the clock moved by hand (no test waits for a soak).
 */
import { ErrorCode, type FileChange, type PromotionRequirement, storedPatch } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import type { PromotionConfig } from '../src/config.js';
import { checkPromotion } from '../src/engine/promotion-gate.js';
import { RolloutView } from '../src/engine/rollout-view.js';
import { refusal } from './support/refusal.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { PATCH_ID, SimulatedFleet, T0 } from './support/simulated-fleet.js';

const MINUTE = 60_000;
const POLICY: PromotionConfig = { label: 'env', order: ['staging', 'prod'], minSoakMinutes: 30 };

async function stagedFleet(): Promise<SimulatedFleet> {
  const fleet = await SimulatedFleet.open({ promotion: POLICY });
  await fleet.addHosts(['stg-1', 'stg-2'], { labels: { env: 'staging' } });
  await fleet.addHosts(['prod-1', 'prod-2'], { labels: { env: 'prod' } });
  return fleet;
}

/** A one-wave rollout of `patchId` on the hosts labelled env=`env`, run to success. */
async function succeedOn(fleet: SimulatedFleet, env: string, patchId = PATCH_ID): Promise<string> {
  const id = await fleet.launch({ patchId, target: { labels: { env } }, waves: ['100%'] });
  for (const run of await fleet.store.hostRuns.forRollout(id)) await fleet.finish(run.hostId);
  expect(await fleet.state(id)).toBe('succeeded');
  return id;
}

async function prodRollout(fleet: SimulatedFleet, patchId = PATCH_ID): Promise<string> {
  return (await fleet.create({ patchId, target: { labels: { env: 'prod' } }, waves: ['100%'] })).id;
}

/** The refusal of start, its message and the requirements it names. */
async function refusedStart(fleet: SimulatedFleet, id: string) {
  const err = await refusal(async () => await fleet.engine.start(id, 'alice'));
  expect(err.code).toBe(ErrorCode.conflict);
  // Nothing changed: not started, no host frozen, no decision kept.
  expect(await fleet.state(id)).toBe('scheduled');
  expect(await fleet.store.hostRuns.forRollout(id)).toEqual([]);
  expect(await fleet.store.rollouts.promotion(id)).toBeUndefined();
  return { message: err.message, missing: (err.details as { missing: PromotionRequirement[] }).missing };
}

async function samePatchAgain(fleet: SimulatedFleet, id: string, change?: Partial<FileChange>): Promise<string> {
  const patch = storedPatch(
    {
      ...SAMPLE_PATCH_SPEC,
      title: 'Same fix, said better',
      change: { ...(SAMPLE_PATCH_SPEC.change as FileChange), ...change },
    },
    { id, createdBy: 'carol', createdAt: new Date(fleet.now).toISOString() },
  );
  await fleet.store.transaction(async () => await fleet.store.patches.insert(patch));
  return id;
}

describe('promotion order: a later environment needs the one before passed by the same content', () => {
  it('refuses prod when the content never ran on staging, naming the environment', async () => {
    const fleet = await stagedFleet();
    const { message, missing } = await refusedStart(fleet, await prodRollout(fleet));
    expect(message).toMatch(
      /^promotion order: hosts in prod need staging passed first: no rollout of this content on staging yet/,
    );
    expect(missing).toEqual([
      { env: 'prod', needs: 'staging', passedBy: null, missing: 'no rollout of this content on staging yet' },
    ]);
  });

  it('refuses while the staging rollout is still running, and names it', async () => {
    const fleet = await stagedFleet();
    const staging = await fleet.launch({ target: { labels: { env: 'staging' } }, waves: ['100%'] });
    const { missing } = await refusedStart(fleet, await prodRollout(fleet));
    expect(missing[0]?.missing).toBe(`no succeeded rollout on staging: the latest, ${staging}, is running`);
  });

  it('refuses after a halted staging rollout', async () => {
    const fleet = await stagedFleet();
    const staging = await fleet.launch({ target: { labels: { env: 'staging' } }, waves: ['100%'], maxFailures: 0 });
    await fleet.finish('stg-1', 'failed');
    expect(await fleet.state(staging)).toBe('halted');
    expect((await refusedStart(fleet, await prodRollout(fleet))).missing[0]?.missing).toBe(
      `no succeeded rollout on staging: the latest, ${staging}, is halted`,
    );
  });

  it('refuses during the soak with the minutes left, and starts once the soak is over', async () => {
    const fleet = await stagedFleet();
    const staging = await succeedOn(fleet, 'staging');
    const finishedAt = (await fleet.rollout(staging)).finishedAt;
    fleet.now += 10 * MINUTE;
    const prod = await prodRollout(fleet);
    const { message, missing } = await refusedStart(fleet, prod);
    expect(missing[0]).toMatchObject({ env: 'prod', needs: 'staging', passedBy: null, minutesLeft: 20 });
    expect(message).toContain(
      `rollout ${staging} succeeded on staging at ${finishedAt} and is soaking: 20 min left of 30 min`,
    );

    fleet.now += 20 * MINUTE - 1;
    expect((await refusedStart(fleet, prod)).missing[0]?.minutesLeft).toBe(0);
    fleet.now += 1;
    expect((await fleet.engine.start(prod, 'alice')).state).toBe('running');
    const decision = await fleet.store.rollouts.promotion(prod);
    expect(decision).toEqual({
      label: 'env',
      order: ['staging', 'prod'],
      minSoakMinutes: 30,
      environments: [{ env: 'prod', hosts: 2 }],
      unlabeled: 0,
      requirements: [
        {
          env: 'prod',
          needs: 'staging',
          passedBy: { rolloutId: staging, patchId: PATCH_ID, finishedAt },
          missing: null,
        },
      ],
      override: null,
    });
    // The status shows what start decided.
    expect((await new RolloutView(fleet.store, () => true).status(prod)).promotion).toEqual(decision);
  });

  it('does not count a staging rollout reverted after it finished (one host is enough)', async () => {
    const fleet = await stagedFleet();
    const staging = await succeedOn(fleet, 'staging');
    fleet.now += 60 * MINUTE;
    await fleet.engine.revertHost(staging, 'stg-1', 'alice');
    await fleet.engine.whenIdle();
    expect((await refusedStart(fleet, await prodRollout(fleet))).missing[0]?.missing).toBe(
      `rollout ${staging} succeeded on staging but was reverted after it finished; a new rollout on staging must succeed`,
    );
    // A new staging rollout of the same content passes again, after its own soak.
    const again = await succeedOn(fleet, 'staging');
    fleet.now += 30 * MINUTE;
    const prod = await prodRollout(fleet);
    await fleet.engine.start(prod, 'alice');
    expect((await fleet.store.rollouts.promotion(prod))?.requirements[0]?.passedBy?.rolloutId).toBe(again);
  });

  it('counts a staging rollout of another patch with the same content, not one with other bytes', async () => {
    const fleet = await stagedFleet();
    const same = await samePatchAgain(fleet, 'pat_same');
    const other = await samePatchAgain(fleet, 'pat_other', { content: 'workers = 9\n' });
    await succeedOn(fleet, 'staging', other);
    fleet.now += 60 * MINUTE;
    expect((await refusedStart(fleet, await prodRollout(fleet))).missing[0]?.missing).toBe(
      'no rollout of this content on staging yet',
    );

    const staging = await succeedOn(fleet, 'staging', same);
    fleet.now += 60 * MINUTE;
    const prod = await prodRollout(fleet);
    await fleet.engine.start(prod, 'alice');
    expect((await fleet.store.rollouts.promotion(prod))?.requirements[0]?.passedBy).toMatchObject({
      rolloutId: staging,
      patchId: 'pat_same',
    });
  });

  it('holds a host without the label (or with a value not in the order) to the last environment', async () => {
    const fleet = await stagedFleet();
    await fleet.addHosts(['nolabel-1'], { labels: { role: 'web' } });
    await fleet.addHosts(['dev-1'], { labels: { env: 'dev' } });
    const id = (await fleet.create({ target: { hostIds: ['stg-1', 'nolabel-1', 'dev-1'] }, waves: ['100%'] })).id;
    const { missing } = await refusedStart(fleet, id);
    expect(missing.map((m) => `${m.env}<-${m.needs}`)).toEqual(['prod<-staging']);
  });

  it('starts the first environment, and a rollout with no later environment, without any check', async () => {
    const fleet = await stagedFleet();
    const id = await fleet.launch({ target: { labels: { env: 'staging' } } });
    expect(await fleet.state(id)).toBe('running');
    expect(await fleet.store.rollouts.promotion(id)).toMatchObject({
      environments: [{ env: 'staging', hosts: 2 }],
      requirements: [],
      override: null,
    });
  });

  it('checks every environment a mixed target reaches', async () => {
    const fleet = await SimulatedFleet.open({
      promotion: { label: 'env', order: ['dev', 'staging', 'prod'], minSoakMinutes: 0 },
    });
    await fleet.addHosts(['dev-1'], { labels: { env: 'dev' } });
    await fleet.addHosts(['stg-1'], { labels: { env: 'staging' } });
    await fleet.addHosts(['prod-1'], { labels: { env: 'prod' } });
    await succeedOn(fleet, 'dev');
    const id = (await fleet.create({ target: { all: true }, waves: ['100%'] })).id;
    const { missing } = await refusedStart(fleet, id);
    // dev passed staging's need; prod's need (staging) is not met.
    expect(missing.map((m) => `${m.env}<-${m.needs}`)).toEqual(['prod<-staging']);
  });

  it('a scheduled start (startAt) waits for the soak and starts by itself once it is over', async () => {
    const fleet = await stagedFleet();
    await succeedOn(fleet, 'staging');
    const prod = (
      await fleet.create({
        target: { labels: { env: 'prod' } },
        waves: ['100%'],
        startAt: new Date(fleet.now).toISOString(),
      })
    ).id;
    await fleet.advance(29 * MINUTE);
    expect(await fleet.state(prod)).toBe('scheduled');
    await fleet.advance(MINUTE);
    expect(await fleet.state(prod)).toBe('running');
  });

  it('without a promotion order, any rollout starts and no decision is kept', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['prod-1'], { labels: { env: 'prod' } });
    const id = await fleet.launch({ target: { labels: { env: 'prod' } } });
    expect(await fleet.state(id)).toBe('running');
    expect(await fleet.store.rollouts.promotion(id)).toBeUndefined();
  });
});

describe('an admin overrides the promotion order', () => {
  it('starts with the reason on the record, in the audit trail and in the status', async () => {
    const fleet = await stagedFleet();
    const prod = await prodRollout(fleet);
    const started = await fleet.engine.start(prod, 'root-admin', {
      overridePromotion: { reason: 'staging is down; CVE fix cannot wait' },
    });
    expect(started.state).toBe('running');
    const decision = await fleet.store.rollouts.promotion(prod);
    expect(decision?.override).toEqual({
      by: 'root-admin',
      at: new Date(fleet.now).toISOString(),
      reason: 'staging is down; CVE fix cannot wait',
    });
    expect(decision?.requirements[0]).toMatchObject({
      passedBy: null,
      missing: 'no rollout of this content on staging yet',
    });
    const event = (await fleet.events(prod)).find((e) => e.type === 'rollout.promotion_overridden');
    expect(event).toMatchObject({
      actor: 'root-admin',
      data: { reason: 'staging is down; CVE fix cannot wait', missing: [{ env: 'prod', needs: 'staging' }] },
    });
  });

  it('records no override when nothing needed overriding', async () => {
    const fleet = await stagedFleet();
    await succeedOn(fleet, 'staging');
    fleet.now += 30 * MINUTE;
    const prod = await prodRollout(fleet);
    await fleet.engine.start(prod, 'root-admin', { overridePromotion: { reason: 'just in case' } });
    expect((await fleet.store.rollouts.promotion(prod))?.override).toBeNull();
    expect((await fleet.events(prod)).map((e) => e.type)).not.toContain('rollout.promotion_overridden');
  });
});

describe('checkPromotion (the rule alone)', () => {
  const run = (finishedMinutesAgo: number, revertedSince = false) => ({
    rolloutId: `ro_${finishedMinutesAgo}`,
    patchId: 'pat_1',
    state: 'succeeded' as const,
    finishedAt: new Date(T0 - finishedMinutesAgo * MINUTE).toISOString(),
    environments: ['staging'],
    revertedSince,
  });
  const prodHost = { env: 'prod', labeled: true };

  it('takes the newest soaked, unreverted run; a newer soaking one does not hide an older soaked one', () => {
    const { blocking, decision } = checkPromotion(POLICY, [prodHost], [run(90), run(40), run(5)], T0);
    expect(blocking).toEqual([]);
    expect(decision.requirements[0]?.passedBy?.rolloutId).toBe('ro_40');
  });

  it('a reverted run does not count even when soaked; the soaking one then says how long', () => {
    const { blocking } = checkPromotion(POLICY, [prodHost], [run(90, true), run(12)], T0);
    expect(blocking[0]).toMatchObject({ minutesLeft: 18 });
    expect(blocking[0]?.missing).toContain('soaking: 18 min left of 30 min');
  });

  it('a run on another environment does not count', () => {
    const onProd = { ...run(90), environments: ['prod'] };
    expect(checkPromotion(POLICY, [prodHost], [onProd], T0).blocking[0]?.missing).toBe(
      'no rollout of this content on staging yet',
    );
  });
});
