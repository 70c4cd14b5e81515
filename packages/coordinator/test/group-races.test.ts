/**
 * Adversarial review of a coordinator group: several members (each its own Store, CoordinatorGroup and
 * RolloutEngine, as separate processes have) on one real PostgreSQL 15, with scripted agents.
 */
import { RolloutRequestSchema } from '@fleetpatch/shared';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { ENGINE_STEP_LOCK_KEY } from '../src/group/engine-step-lock.js';
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

  /** A rollout of the group's patch, created and started at `driver` (which so drives it); its id. */
  async function started(driver: GroupMember, input: Record<string, unknown>): Promise<string> {
    const request = RolloutRequestSchema.parse({ patchId: GROUP_PATCH_ID, requiredApprovals: 0, ...input });
    const { id } = await driver.engine.create(request, 'alice');
    await driver.engine.start(id, 'alice');
    return id;
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

  it("a rollout's success ends the bake watch of an agent connected to another member, through the outbox", async () => {
    const { m } = await group(2);
    const [a, b] = m as [GroupMember, GroupMember];
    await seedGroup(a.store, ['h1']);
    const h1 = new ScriptedAgent('h1');
    // The agent is connected to member b; member a starts (and so drives) the rollout.
    await b.connect(h1);
    const id = await started(a, { target: { hostIds: ['h1'] }, waves: ['100%'], bakeSeconds: 3600 });
    await until(() => h1.openApply(), 'h1 to get its apply through the outbox');
    const orderId = h1.finish();
    await until(() => h1.received.some((msg) => msg.type === 'order.watch'), 'the bake watch to reach h1');
    // Promoted at the driver: it succeeds there, and its cancel goes the way its orders went.
    await a.engine.promote(id, 'bob');
    await until(async () => (await a.store.rollouts.get(id))?.state === 'succeeded', 'the rollout to succeed');
    await until(() => h1.received.some((msg) => msg.type === 'order.cancel'), 'the cancel to reach h1');
    const toH1 = h1.received.filter((msg) => msg.type !== 'order.ack');
    // A copy sent again (a lease taken over on a loaded machine resends the orders in flight, which the
    // agent answers from its journal) is the same message: the order of the distinct ones is the point.
    const distinct = [...new Set(toH1.map((msg) => JSON.stringify([msg.type, 'orderId' in msg ? msg.orderId : null])))];
    expect(distinct.map((key) => JSON.parse(key))).toEqual([
      ['order.apply', orderId],
      ['order.watch', orderId],
      ['order.cancel', orderId],
    ]);
    expect((await b.store.hostRuns.get(id, 'h1'))?.state).toBe('healthy');
  });

  // Bakes are judged against the `bake_until` another member wrote, and a host's timeout from the
  // delivery another member stamped: each member's own wall clock would be minutes off. A group runs on
  // the database's clock (DatabaseClock): the member that takes over waits out the rest of the bake.
  it('a member whose clock runs two minutes ahead takes a rollout over without ending a bake early', async () => {
    // c2's machine clock is 2 minutes ahead of c1's (a fault scenario 9 skew), the database's is right.
    const { m } = await group(2, 1500, [0, 120_000]);
    const [a, b] = m as [GroupMember, GroupMember];
    await seedGroup(a.store, ['h1', 'h2']);
    const agents = ['h1', 'h2'].map((id) => new ScriptedAgent(id));
    for (const agent of agents) await b.connect(agent);
    const [h1, h2] = agents as [ScriptedAgent, ScriptedAgent];
    a.startTicking();
    b.startTicking();
    const request = RolloutRequestSchema.parse({
      patchId: GROUP_PATCH_ID,
      target: { hostIds: ['h1', 'h2'] },
      waves: [1, '100%'],
      bakeSeconds: 90,
      requiredApprovals: 0,
    });
    const { id } = await a.engine.create(request, 'alice');
    await a.engine.start(id, 'alice');
    await until(() => h1.openApply() ?? h2.openApply(), 'the canary to get its apply');
    (h1.openApply() ? h1 : h2).finish();
    await until(async () => (await a.store.rollouts.get(id))?.bakeUntil !== null, 'the canary wave to pass and bake');
    // c1, driving, dies in the first seconds of the canary's bake; c2 takes the rollout over within a lease.
    await a.crash();
    await until(async () => (await b.group.leases.all()).some((l) => l.holder === 'c2'), 'c2 to take the lease over');
    await new Promise((resolve) => setTimeout(resolve, 1000)); // a few of c2's ticks
    // The canary has baked for about three seconds of its 90.
    expect({
      wave: (await b.store.rollouts.get(id))?.currentWave,
      applies: h1.applies().length + h2.applies().length,
    }).toEqual({
      wave: 0,
      applies: 1,
    });
  });

  it('a member whose step lock session is lost mid-step cannot overwrite a transition another member committed meanwhile', async () => {
    const { url, m } = await group(2);
    const [a, b] = m as [GroupMember, GroupMember];
    await seedGroup(a.store, ['h1']);
    const h1 = new ScriptedAgent('h1');
    await b.connect(h1);
    a.startTicking();
    b.startTicking();
    const request = RolloutRequestSchema.parse({
      patchId: GROUP_PATCH_ID,
      target: { hostIds: ['h1'] },
      waves: ['100%'],
      bakeSeconds: 1,
      requiredApprovals: 0,
    });
    const { id } = await a.engine.create(request, 'alice');
    await a.engine.start(id, 'alice');
    await until(() => h1.openApply(), 'h1 to get its apply');
    // The driver's last step (the bake is over: succeeded) is slow to write its transition (a slow
    // statement, a pause): held here, after it read the rollout running and decided. In place before
    // the wave passes: a bake of a second could end before a poll for it returns on a loaded runner.
    // The driver is c1 as a rule (it started the rollout), but c2's tick may take the unleased rollout
    // first: both are held alike, and the other member is the one where the operator aborts.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let driver: GroupMember | undefined;
    for (const member of [a, b]) {
      const setState = member.store.rollouts.setState.bind(member.store.rollouts);
      member.store.rollouts.setState = async (...args) => {
        if (args[1] === 'succeeded') {
          driver = member;
          await gate;
        }
        return await setState(...args);
      };
    }
    h1.finish();
    await until(async () => (await a.store.rollouts.get(id))?.bakeUntil !== null, 'the wave to pass and bake');
    await until(() => driver, "the driver's final transition");
    const other = driver === a ? b : a;
    // Meanwhile the driver's session holding the step lock is lost (a DBA's pg_terminate_backend, a
    // proxy, a firewall dropping an idle connection): the server lets the lock go; the step goes on
    // through its pool.
    const side = await sideConnection(url);
    const holder = await side.query("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted");
    expect(holder.rows).toHaveLength(1);
    await side.query('SELECT pg_terminate_backend($1)', [holder.rows[0].pid]);
    // An operator aborts at the other member, whose step now takes the lock, reads the rollout running, and commits.
    const aborted = await other.engine.abort(id, 'carol', 'stop').then(
      (r) => r.state,
      (err: unknown) => (err as Error).message,
    );
    release();
    const abortAnswer = aborted;
    await new Promise((resolve) => setTimeout(resolve, 500));
    await until(async () => (await other.store.rollouts.get(id))?.state !== 'running', 'the rollout to settle');
    // Every rollout transition on the record leaves the state the one before it entered.
    const events = (await other.store.events(id, 0, 1000)).filter((e) => e.hostId === null && e.toState);
    const chain = events.map((e) => `${e.fromState ?? ''}>${e.toState}`);
    const broken = events.some((e, i) => i > 0 && e.fromState !== events[i - 1]?.toState);
    expect({ broken, chain, abortAnswer, state: (await other.store.rollouts.get(id))?.state }).toEqual({
      broken: false,
      chain: ['>scheduled', 'scheduled>running', 'running>aborted'],
      abortAnswer: 'aborted',
      state: 'aborted',
    });
  });

  it('a host connected to another member moments ago is not failed as offline at dispatch (offline policy fail)', async () => {
    const { m } = await group(2, 3000);
    const [a, b] = m as [GroupMember, GroupMember];
    await seedGroup(a.store, ['h1']);
    const h1 = new ScriptedAgent('h1');
    // Its agent has just connected to c2 (it said hello; c2's store says so) when c1 starts the rollout.
    await b.connect(h1);
    await until(async () => (await a.store.agents.get('h1'))?.lastSeenAt !== null, 'h1 seen');
    const request = RolloutRequestSchema.parse({
      patchId: GROUP_PATCH_ID,
      target: { hostIds: ['h1'] },
      waves: ['100%'],
      maxFailures: 0,
      offline: { mode: 'fail', deliveryDeadlineSeconds: 300 },
      requiredApprovals: 0,
    });
    const { id } = await a.engine.create(request, 'alice');
    await a.engine.start(id, 'alice');
    await until(async () => (await a.store.hostRuns.get(id, 'h1'))?.state !== 'queued', 'h1 dispatched or failed');
    const run = await a.store.hostRuns.get(id, 'h1');
    // Sent its order (which its agent may already have taken: delivered), not failed as offline.
    expect({ sent: ['dispatched', 'delivered'].includes(run?.state ?? ''), reason: run?.reason ?? null }).toEqual({
      sent: true,
      reason: null,
    });
  });

  it("a member taking over a dead member's rollout during a long engine step keeps its own leases", async () => {
    const { url, m } = await group(3, 1500);
    const [a, b, c] = m as [GroupMember, GroupMember, GroupMember];
    await seedGroup(a.store, ['h1', 'h2', 'h3']);
    // Three running rollouts, one host each, whose agents are away (policy wait): they stay running.
    const ids: string[] = [];
    for (const [member, host] of [
      [a, 'h1'],
      [b, 'h2'],
      [c, 'h3'],
    ] as const) {
      const request = RolloutRequestSchema.parse({
        patchId: GROUP_PATCH_ID,
        target: { hostIds: [host] },
        waves: ['100%'],
        requiredApprovals: 0,
      });
      const { id } = await member.engine.create(request, 'alice');
      await member.engine.start(id, 'alice');
      ids.push(id);
    }
    // Read at a member that stays alive (a, until the victim is known).
    let reader = a;
    const leases = async () => new Map((await reader.group.leases.all()).map((l) => [l.rolloutId, l]));
    await until(async () => (await leases()).size === 3, 'three leases');
    // Each member drives the rollout it started, unless a stall on a loaded machine let another take
    // one over before this point: the one that dies is a member driving a rollout (c, as a rule),
    // and the rollouts the others drive are watched.
    const before = await leases();
    const holders = new Set([...before.values()].map((l) => l.holder));
    expect(holders.size).toBeGreaterThan(1);
    const victim = [c, b, a].find((member) => holders.has(member.id)) as GroupMember;
    const alive = [...before.values()].filter((l) => l.holder !== victim.id);
    reader = victim === a ? b : a;

    // A long engine step somewhere in the group (a start freezing a large target, a hello storm):
    // held here for two lease periods. Meanwhile the victim dies; another member takes its rollouts over.
    const side = await sideConnection(url);
    await side.query('SELECT pg_advisory_lock($1)', [ENGINE_STEP_LOCK_KEY]);
    await victim.crash();
    members.splice(members.indexOf(victim), 1);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    const during = await leases();
    await side.query('SELECT pg_advisory_unlock($1)', [ENGINE_STEP_LOCK_KEY]);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = await leases();
    // The rollouts of the members that stayed alive never changed hands (no takeover, no resends).
    const moved = alive.filter(
      (l) => after.get(l.rolloutId)?.token !== l.token || during.get(l.rolloutId) === undefined,
    );
    expect(
      moved.map((l) => ({
        rolloutId: l.rolloutId,
        from: l.holder,
        to: after.get(l.rolloutId)?.holder,
        during: during.get(l.rolloutId)?.holder ?? 'nobody',
      })),
    ).toEqual([]);
  });

  it('held up: a driver stalled mid-dispatch past its lease, taken over meanwhile, never dispatches a host twice', async () => {
    const { m } = await group(2, 1500);
    const [a, b] = m as [GroupMember, GroupMember];
    const ids = ['h1', 'h2', 'h3'];
    await seedGroup(a.store, ids);
    const agents = ids.map((id) => new ScriptedAgent(id));
    for (const agent of agents) await b.connect(agent);
    a.startTicking();
    b.startTicking();
    const request = RolloutRequestSchema.parse({
      patchId: GROUP_PATCH_ID,
      target: { hostIds: ids },
      waves: ['100%'],
      maxParallel: 1,
      requiredApprovals: 0,
    });
    const { id } = await a.engine.create(request, 'alice');
    await a.engine.start(id, 'alice');
    const [h1, h2, h3] = agents as [ScriptedAgent, ScriptedAgent, ScriptedAgent];
    await until(() => h1.openApply(), 'h1 to get its apply');
    // c1 stalls in its next dispatch (its whole process: no heartbeat either) for three lease periods.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let stalled = false;
    const nextQueued = a.store.hostRuns.nextQueued.bind(a.store.hostRuns);
    a.store.hostRuns.nextQueued = async (...args) => {
      if (!stalled) {
        stalled = true;
        clearInterval((a.group as unknown as { heartbeat: NodeJS.Timeout }).heartbeat);
        await gate;
      }
      return await nextQueued(...args);
    };
    h1.finish();
    await until(() => stalled, 'c1 to stall in its dispatch');
    await until(async () => (await b.group.leases.all()).some((l) => l.holder === 'c2'), 'c2 to take the lease');
    release();
    for (const agent of [h2, h3]) {
      await until(() => agent.openApply(), `${agent.id} to get its apply`);
      agent.finish();
    }
    await until(async () => (await b.store.rollouts.get(id))?.state === 'succeeded', 'the rollout to succeed');
    // One apply order per host, whoever drove and whatever was resent.
    for (const agent of agents) expect(new Set(agent.applies().map((e) => e.orderId)).size).toBe(1);
    const dispatched = (await b.store.events(id, 0, 1000)).filter((e) => e.type === 'host.dispatched');
    expect(dispatched.map((e) => e.hostId).sort()).toEqual(ids);
  });
});
