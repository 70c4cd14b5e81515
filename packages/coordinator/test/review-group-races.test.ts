/**
 * Adversarial review of a coordinator group: several members (each its own Store, CoordinatorGroup and
 * RolloutEngine, as separate processes have) on one real PostgreSQL 15, with scripted agents.
 */
import { RolloutRequestSchema } from '@fleetpatch/shared';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { GROUP_PATCH_ID, GroupMember, ScriptedAgent, seedGroup, until } from './support/group-members.js';

describeNeeding(postgresCluster, 'review: races in a coordinator group on PostgreSQL', () => {
  const cluster = () => runPostgresCluster();
  const members: GroupMember[] = [];
  const clients: pg.Client[] = [];
  afterEach(async () => {
    for (const client of clients.splice(0)) await client.end().catch(() => {});
    for (const member of members.splice(0).reverse()) await member.close();
  });

  async function group(n: number, leaseMs = 3000, skewsMs: number[] = []): Promise<{ url: string; m: GroupMember[] }> {
    const url = await cluster().createDatabase();
    const m: GroupMember[] = [];
    for (let i = 0; i < n; i++) {
      const skew = skewsMs[i] ?? 0;
      const member = await GroupMember.start({ url, id: `c${i + 1}`, leaseMs, now: () => Date.now() + skew });
      members.push(member);
      m.push(member);
    }
    return { url, m };
  }

  async function sideConnection(url: string): Promise<pg.Client> {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    clients.push(client);
    return client;
  }

  it('an abort at one member never lets an apply the driver sent through the outbox reach its agent after the cancel', async () => {
    const { url, m } = await group(2);
    const [a, b] = m as [GroupMember, GroupMember];
    await seedGroup(a.store, ['h1', 'h2']);
    const agents = ['h1', 'h2'].map((id) => new ScriptedAgent(id));
    // Both agents are connected to member b; member a starts (and so drives) the rollout.
    for (const agent of agents) await b.connect(agent);
    const [h1, h2] = agents as [ScriptedAgent, ScriptedAgent];
    const request = RolloutRequestSchema.parse({
      patchId: GROUP_PATCH_ID,
      target: { hostIds: ['h1', 'h2'] },
      waves: ['100%'],
      maxParallel: 1,
      requiredApprovals: 0,
    });
    const { id } = await a.engine.create(request, 'alice');
    await a.engine.start(id, 'alice');
    await until(() => h1.openApply(), 'h1 to get its apply through the outbox');
    expect(await a.group.leases.all()).toMatchObject([{ rolloutId: id, holder: 'c1' }]);

    // The driver's next outbox write is slow to commit (a busy member, a slow statement): held here.
    const side = await sideConnection(url);
    await side.query('BEGIN');
    await side.query('LOCK TABLE agent_outbox IN EXCLUSIVE MODE');
    h1.finish(); // recorded at b (h1 is connected there), which wakes the driver: a dispatches h2
    await until(async () => (await a.store.hostRuns.get(id, 'h2'))?.state === 'dispatched', 'h2 dispatched');

    // An operator aborts at b while h2's apply is committed but not yet in the outbox.
    await b.engine.abort(id, 'carol', 'stop');
    await until(() => h2.received.some((msg) => msg.type === 'order.cancel'), 'the cancel to reach h2');
    await side.query('COMMIT');

    // The apply now reaches h2 after the cancel (which it could not match to any order).
    await until(() => h2.applies().length > 0, 'the apply to reach h2');
    // Applying takes the agent a while (snapshot, write, health): long enough for a second cancel.
    await until(() => !h2.openApply(), 'a cancel of the running apply', 3000).catch(() => undefined);
    const order = h2.received.map((msg) => msg.type).filter((type) => type !== 'order.ack');
    if (h2.openApply()) h2.finish(); // it ran: nothing stopped it
    await until(async () => {
      const run = await b.store.hostRuns.get(id, 'h2');
      return run && run.state !== 'dispatched' && run.state !== 'delivered';
    }, 'h2 to come to rest');
    const run = await b.store.hostRuns.get(id, 'h2');
    expect((await b.store.rollouts.get(id))?.state).toBe('aborted');
    // Abort is sticky: an order of an aborted rollout never runs to the end on its host.
    expect({ order, h2State: run?.state, h2Changed: h2.changed }).toEqual({
      order: ['order.cancel', 'order.apply', 'order.cancel'],
      h2State: 'cancelled',
      h2Changed: false,
    });
  });

  // FAILS today (kept as it.fails, see the review report): deadlines and bakes are judged on each member's
  // own wall clock (the engine's clock) against times another member wrote (dispatched_at, bake_until);
  // only leases use the database's clock. The member that takes over times h1 out at once and the
  // rollout halts (maxFailures 0). With skew 0 the same test passes. Proposed: in a group, the engine's
  // clock is the database's (an offset measured at join and on every heartbeat).
  it.fails('a member whose clock runs two minutes ahead takes a rollout over without timing out hosts that are not late', async () => {
    // c2's machine clock is 2 minutes ahead of c1's (a fault scenario 9 skew), the database's is right.
    const { m } = await group(2, 1500, [0, 120_000]);
    const [a, b] = m as [GroupMember, GroupMember];
    await seedGroup(a.store, ['h1', 'h2']);
    const agents = ['h1', 'h2'].map((id) => new ScriptedAgent(id));
    for (const agent of agents) await b.connect(agent);
    const [h1] = agents as [ScriptedAgent, ScriptedAgent];
    a.startTicking();
    b.startTicking();
    const request = RolloutRequestSchema.parse({
      patchId: GROUP_PATCH_ID,
      target: { hostIds: ['h1', 'h2'] },
      waves: ['100%'],
      maxParallel: 1,
      maxFailures: 0,
      hostTimeoutSeconds: 90,
      requiredApprovals: 0,
    });
    const { id } = await a.engine.create(request, 'alice');
    await a.engine.start(id, 'alice');
    await until(() => h1.openApply(), 'h1 to get its apply');
    // c1, driving, dies a moment after dispatching h1; c2 takes the rollout over within a lease.
    await a.crash();
    await until(async () => (await b.group.leases.all()).some((l) => l.holder === 'c2'), 'c2 to take the lease over');
    await new Promise((resolve) => setTimeout(resolve, 1000)); // a few of c2's ticks
    // h1 has been applying for about three seconds of its 90.
    const run = await b.store.hostRuns.get(id, 'h1');
    expect({ state: run?.state, rollout: (await b.store.rollouts.get(id))?.state }).toEqual({
      state: 'delivered',
      rollout: 'running',
    });
  });
});
