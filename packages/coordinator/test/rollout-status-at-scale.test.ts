/**
 * Rollout status at fleet scale: a summary (counts per wave and state, the first failures) that does
 * not grow with the fleet, and the hosts paged and filterable by state and wave — agreeing with the
 * full status, through the view and through the HTTP API (bad queries: 400, nothing read).
 */
import {
  RolloutHostPageSchema,
  RolloutListSchema,
  RolloutStatusSchema,
  RolloutSummarySchema,
} from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import { type HostPageQuery, RolloutView } from '../src/engine/rollout-view.js';
import { type HubUnderTest, startHub } from './support/hub-under-test.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

/** 10 hosts in waves [1, 9]: host-1 healthy, then in wave 2 host-2 failed, host-10 still in flight, the rest healthy. */
async function halfwayFleet(): Promise<{ fleet: SimulatedFleet; view: RolloutView; id: string }> {
  const fleet = await SimulatedFleet.open();
  const ids = hosts(10);
  await fleet.addHosts(ids);
  const id = await fleet.launch({ waves: [1, '100%'], maxParallel: 20, maxFailures: 5 });
  await fleet.finish('host-1');
  await fleet.finish('host-2', 'failed');
  await fleet.finishAll(ids.slice(2, 9));
  return { fleet, view: new RolloutView(fleet.store, (hostId) => hostId !== 'host-5'), id };
}

/** Every page of `query` (without a cursor), followed to the end. */
async function allPages(view: RolloutView, id: string, query: Omit<HostPageQuery, 'cursor'>) {
  const pages = [];
  let cursor: string | undefined;
  do {
    const page = await view.hostPage(id, { ...query, cursor });
    pages.push(page);
    cursor = page.next ?? undefined;
  } while (cursor !== undefined);
  return pages;
}

describe('rollout summary', () => {
  it('counts per wave and state and names the failures, agreeing with the full status', async () => {
    const { view, id } = await halfwayFleet();
    const summary = RolloutSummarySchema.parse(await view.summary(id));
    const status = await view.status(id);

    expect(summary.counts).toEqual({ healthy: 8, failed: 1, dispatched: 1 });
    expect(summary.counts).toEqual(status.counts);
    expect(summary.failures).toBe(1);
    expect(summary.toleratedFailures).toBe(status.toleratedFailures);
    expect(summary.waves).toEqual([
      { wave: 0, phase: 'passed', hostCount: 1, counts: { healthy: 1 } },
      { wave: 1, phase: 'running', hostCount: 9, counts: { healthy: 7, failed: 1, dispatched: 1 } },
    ]);
    expect(summary.waves.map((w) => w.phase)).toEqual(status.waves.map((w) => w.phase));
    const failed = status.waves[1]?.hosts.find((h) => h.hostId === 'host-2');
    expect(failed?.errorCode).not.toBeNull();
    expect(summary.failedHosts).toEqual([
      { hostId: 'host-2', wave: 1, state: 'failed', errorCode: failed?.errorCode, reason: failed?.reason },
    ]);
    expect(summary.rollout).toEqual(status.rollout);
  });

  it('names at most 10 failed hosts, whatever the number of failures', async () => {
    const fleet = await SimulatedFleet.open();
    const ids = hosts(14);
    await fleet.addHosts(ids);
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 20, maxFailures: 20 });
    await fleet.finishAll(ids, 'failed');
    const summary = await new RolloutView(fleet.store, () => true).summary(id);
    expect(summary.failures).toBe(14);
    // By position in the wave, as the full status lists them.
    const inOrder = (await new RolloutView(fleet.store, () => true).status(id)).waves[0]?.hosts.map((h) => h.hostId);
    expect(summary.failedHosts.map((h) => h.hostId)).toEqual(inOrder?.slice(0, 10));
  });

  it("cuts a failed host's reason to 200 characters; the host page has it whole", async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    const reason = `policy: ${'x'.repeat(1000)}`;
    await fleet.refuse('host-1', reason);
    const view = new RolloutView(fleet.store, () => true);
    expect((await view.summary(id)).failedHosts[0]?.reason).toBe(reason.slice(0, 200));
    expect((await view.hostPage(id, { state: 'failed', limit: 1 })).hosts[0]?.reason).toBe(reason);
  });
});

/** A view that reads the engine's live health board, as the coordinator's does. */
function liveView(fleet: SimulatedFleet): RolloutView {
  return new RolloutView(
    fleet.store,
    () => true,
    () => undefined,
    (orderId) => fleet.engine.liveHealth.of(orderId),
  );
}

describe('what a summary carries for a watch', () => {
  it('names the verifying hosts whose latest poll fails a check, with only the failing checks', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(4));
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 10 });
    for (const host of hosts(3)) await fleet.progress(host, 'verifying');
    await fleet.healthPoll('host-1', { web: 'HTTP 500', db: true }, 3);
    await fleet.healthPoll('host-2', { web: true, db: true }, 0);
    // host-3 verifies without a poll yet; host-4 is still dispatched.
    const view = liveView(fleet);
    const summary = RolloutSummarySchema.parse(await view.summary(id));
    const live = (await view.status(id)).waves[0]?.hosts.find((h) => h.hostId === 'host-1')?.liveHealth;
    expect(summary.failingHosts).toEqual([
      { hostId: 'host-1', wave: 0, state: 'verifying', failingPolls: 3, checks: [live?.checks[0]] },
    ]);
    expect(live?.checks[0]).toMatchObject({ check: 'web', ok: false, observed: 'HTTP 500' });
    await fleet.healthPoll('host-1', { web: true, db: true }, 0);
    expect((await view.summary(id)).failingHosts).toEqual([]);
  });

  it('names at most 10 failing hosts, and cuts what a check saw to 200 characters', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(12));
    const id = await fleet.launch({ waves: ['100%'], maxParallel: 20 });
    for (const host of hosts(12)) {
      await fleet.progress(host, 'verifying');
      await fleet.healthPoll(host, { web: `HTTP 500 ${'x'.repeat(500)}` }, 1);
    }
    const view = liveView(fleet);
    const { failingHosts } = await view.summary(id);
    // By position in the wave, as the full status lists them.
    const inOrder = (await view.status(id)).waves[0]?.hosts.map((h) => h.hostId);
    expect(failingHosts?.map((h) => h.hostId)).toEqual(inOrder?.slice(0, 10));
    expect(failingHosts?.[0]?.checks[0]?.observed).toBe(`HTTP 500 ${'x'.repeat(500)}`.slice(0, 200));
  });

  it("lists a failing host's first 3 failing checks and counts the rest, so the summary stays small", async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['host-1']);
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    const checks = Object.fromEntries(
      Array.from({ length: 32 }, (_, i) => [`check-${i}`, `HTTP 500 ${'x'.repeat(300)}`]),
    );
    await fleet.healthPoll('host-1', { ...checks, db: true }, 1);
    const view = liveView(fleet);
    const summary = RolloutSummarySchema.parse(await view.summary(id));
    const [failing] = summary.failingHosts ?? [];
    expect(failing?.checks.map((c) => c.check)).toEqual(['check-0', 'check-1', 'check-2']);
    expect(failing?.moreChecks).toBe(29);
    // 32 checks failing with 200 characters each: still well under the summary's 5 KB.
    expect(JSON.stringify(summary).length).toBeLessThan(5000);
  });

  it('carries each analysis with its latest measurement only; the status has the latest 20', async () => {
    // A Prometheus that answers 0 every time: the analysis passes after three measurements.
    const fleet = await SimulatedFleet.open({
      metricQuery: async () => ({ ok: true, samples: [{ labels: {}, value: 0 }] }),
    });
    await fleet.addHosts(hosts(3));
    const analysis = {
      kind: 'prometheus' as const,
      name: 'errors',
      address: 'http://127.0.0.1:9090',
      query: 'sum(rate(errors{$wave_hosts}[1m]))',
      condition: '< 0.01',
      intervalSeconds: 10,
      count: 3,
    };
    const id = await fleet.launch({ waves: [1, '100%'], analyses: [analysis] });
    await fleet.finish('host-1');
    for (let i = 0; i < 3; i++) await fleet.advance(10 * SECOND);
    const view = new RolloutView(fleet.store, () => true);
    const [full] = (await view.status(id)).analyses;
    const [brief] = RolloutSummarySchema.parse(await view.summary(id)).analyses ?? [];
    expect(full?.measurements).toHaveLength(3);
    expect(brief).toEqual({ ...full, measurements: full?.measurements.slice(-1) });
  });

  it('carries the warnings as the full status has them, and no window for a rollout without one', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    await fleet.finish('host-2');
    await fleet.advance(1000);
    const view = new RolloutView(fleet.store, () => true);
    expect(await fleet.state(id)).toBe('succeeded');
    // Reverted by hand after it succeeded: the status warns, and so does the summary.
    await fleet.engine.revertHost(id, 'host-1', 'alice');
    await fleet.finishRevert('host-1');
    const status = await view.status(id);
    const summary = RolloutSummarySchema.parse(await view.summary(id));
    expect(status.warnings).toHaveLength(1);
    expect(summary.warnings).toEqual(status.warnings);
    expect(summary.analyses).toEqual([]);
    expect(summary.window).toBeUndefined();
    expect(status.window).toBeUndefined();
  });
});

describe('rollout hosts, paged', () => {
  it('pages of 4 follow each other to the end and hold every host once, in the status order', async () => {
    const { view, id } = await halfwayFleet();
    const pages = await allPages(view, id, { limit: 4 });
    expect(pages.map((p) => p.hosts.length)).toEqual([4, 4, 2]);
    expect(pages.at(-1)?.next).toBeNull();
    const paged = pages.flatMap((p) => p.hosts);
    const full = (await view.status(id)).waves.flatMap((w) => w.hosts.map((h) => ({ wave: w.wave, ...h })));
    expect(paged).toEqual(full);
    expect(paged.find((h) => h.hostId === 'host-5')?.online).toBe(false);
  });

  it('filter by state, by wave, and by both, across pages', async () => {
    const { view, id } = await halfwayFleet();
    const ids = async (query: Omit<HostPageQuery, 'cursor'>) =>
      (await allPages(view, id, query)).flatMap((p) => p.hosts.map((h) => h.hostId));
    expect(await ids({ state: 'failed', limit: 100 })).toEqual(['host-2']);
    expect(await ids({ state: 'dispatched', limit: 1 })).toEqual(['host-10']);
    expect(await ids({ wave: 0, limit: 3 })).toEqual(['host-1']);
    expect(await ids({ wave: 1, state: 'healthy', limit: 2 })).toEqual(hosts(9).slice(2));
    expect(await ids({ wave: 0, state: 'failed', limit: 5 })).toEqual([]);
    expect(await ids({ wave: 7, limit: 5 })).toEqual([]);
  });
});

describe('the summary and hosts routes', () => {
  let hub: HubUnderTest;
  afterEach(async () => hub.close());

  async function draft(): Promise<string> {
    hub = await startHub();
    await hub.register('web-1', { role: 'web' });
    const patch = (await hub.api('POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };
    const created = await hub.api('POST', '/v1/rollouts', { patchId: patch.id, target: { labels: { role: 'web' } } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    return RolloutStatusSchema.parse(created.body).rollout.id;
  }

  it('answer in their documented shapes', async () => {
    const id = await draft();
    const summary = await hub.api('GET', `/v1/rollouts/${id}/summary`);
    expect(summary.status).toBe(200);
    expect(RolloutSummarySchema.parse(summary.body).rollout.id).toBe(id);
    const page = await hub.api('GET', `/v1/rollouts/${id}/hosts?state=queued&wave=0&limit=10`);
    expect(page.status).toBe(200);
    expect(RolloutHostPageSchema.parse(page.body)).toEqual({ hosts: [], next: null });
  });

  it('a rollout naming 10,000 hosts: its summary and the list count them in under 5 KB, its status lists them', async () => {
    hub = await startHub();
    const patch = (await hub.api('POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };
    const named = Array.from({ length: 10_000 }, (_, i) => `web-${String(i).padStart(5, '0')}.example.internal`);
    // Enrolled straight into the store: 10,000 enrollments through the API would be the test's whole time.
    const { store } = hub.app.fleet;
    await store.transaction(async () => {
      for (const [i, hostId] of named.entries())
        await store.agents.enroll(
          { id: hostId, publicKey: `${String(i).padStart(43, 'A')}`, labels: {}, mayReplace: false },
          new Date(0).toISOString(),
        );
    });
    const created = await hub.api('POST', '/v1/rollouts', {
      patchId: patch.id,
      target: { hostIds: named, excludeLabels: { tier: 'canary' } },
    });
    expect(created.status, JSON.stringify(created.body).slice(0, 500)).toBe(201);
    const id = RolloutStatusSchema.parse(created.body).rollout.id;

    const summary = await hub.api('GET', `/v1/rollouts/${id}/summary`);
    expect(summary.status).toBe(200);
    expect(JSON.stringify(summary.body).length).toBeLessThan(5 * 1024);
    const brief = RolloutSummarySchema.parse(summary.body).rollout;
    expect(brief.request.target).toEqual({ hostIdCount: 10_000, excludeLabels: { tier: 'canary' } });

    const list = await hub.api('GET', '/v1/rollouts?limit=5');
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.body).length).toBeLessThan(5 * 1024);
    expect(RolloutListSchema.parse(list.body).rollouts).toEqual([brief]);

    // The request as written is the status's: a brief only leaves the names out.
    const status = RolloutStatusSchema.parse((await hub.api('GET', `/v1/rollouts/${id}`)).body);
    expect(status.rollout.request.target.hostIds).toEqual(named);
    const { hostIds: _named, ...rest } = status.rollout.request.target;
    expect({ ...status.rollout, request: { ...status.rollout.request, target: rest } }).toEqual({
      ...brief,
      request: { ...brief.request, target: { excludeLabels: { tier: 'canary' } } },
    });
  });

  it('an action answers with the summary when asked (`?view=summary`), with the full status otherwise', async () => {
    hub = await startHub({}, { minApprovals: 0 });
    await hub.register('web-1', { role: 'web' });
    const patch = (await hub.api('POST', '/v1/patches', SAMPLE_PATCH_SPEC)).body as { id: string };
    const created = await hub.api('POST', '/v1/rollouts', {
      patchId: patch.id,
      target: { labels: { role: 'web' } },
      requiredApprovals: 0,
      draft: true,
    });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    const id = RolloutStatusSchema.parse(created.body).rollout.id;

    const submitted = await hub.api('POST', `/v1/rollouts/${id}/submit?view=summary`);
    expect(submitted.status, JSON.stringify(submitted.body)).toBe(200);
    expect(RolloutSummarySchema.parse(submitted.body).rollout).toMatchObject({ id, state: 'scheduled' });
    expect(RolloutStatusSchema.safeParse(submitted.body).success).toBe(false);

    const started = await hub.api('POST', `/v1/rollouts/${id}/start?view=summary`);
    expect(started.status, JSON.stringify(started.body)).toBe(200);
    expect(RolloutSummarySchema.parse(started.body)).toMatchObject({
      rollout: { id, hostCount: 1 },
      waves: [{ wave: 0, hostCount: 1 }],
    });
    for (const query of ['', '?view=full']) {
      const paused = await hub.api('POST', `/v1/rollouts/${id}/${query === '' ? 'pause' : 'resume'}${query}`);
      expect(paused.status, JSON.stringify(paused.body)).toBe(200);
      expect(RolloutStatusSchema.parse(paused.body).waves[0]?.hosts.map((h) => h.hostId)).toEqual(['web-1']);
    }
    const aborted = await hub.api('POST', `/v1/rollouts/${id}/abort?view=summary`, { reason: 'enough' });
    expect(RolloutSummarySchema.parse(aborted.body).rollout.state).toBe('aborted');
  });

  it.each([
    ['an unknown view', 'view=brief'],
    ['an empty view', 'view='],
    ['an unknown parameter', 'views=summary'],
  ])('%s on an action is a 400 naming the field, and the action is not taken', async (_what, query) => {
    const id = await draft();
    const answer = await hub.api('POST', `/v1/rollouts/${id}/abort?${query}`);
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer.body)).toContain(query.split('=')[0]);
    const status = RolloutStatusSchema.parse((await hub.api('GET', `/v1/rollouts/${id}`)).body);
    expect(status.rollout.state).toBe('awaiting_approval');
  });

  it('an unknown rollout is 404 on both', async () => {
    await draft();
    for (const url of ['/v1/rollouts/rol_nope/summary', '/v1/rollouts/rol_nope/hosts']) {
      const answer = await hub.api('GET', url);
      expect(answer.status, url).toBe(404);
    }
  });

  it.each([
    ['an unknown state', 'state=exploded', 'state'],
    ['a negative wave', 'wave=-1', 'wave'],
    ['a wave that is not a number', 'wave=two', 'wave'],
    ['a limit of 0', 'limit=0', 'limit'],
    ['a limit over 1000', 'limit=1001', 'limit'],
    ['a forged cursor', 'cursor=1%20OR%201', 'cursor'],
    ['an unknown parameter', 'sort=host', 'sort'],
  ])('%s is a 400 naming the field', async (_what, query, field) => {
    const id = await draft();
    const answer = await hub.api('GET', `/v1/rollouts/${id}/hosts?${query}`);
    expect(answer.status).toBe(400);
    expect(JSON.stringify(answer.body)).toContain(field);
  });
});
