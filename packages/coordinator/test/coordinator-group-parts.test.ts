/**
 * The parts of a coordinator group, each against a real PostgreSQL 15 with two or three members on
 * one database (each member its own Store and connections, as separate coordinator processes have):
 * leases and their fencing tokens, the engine step lock, the outbox, presence and the event tail.
 * The whole group — processes, agents, SIGKILLs — is test/coordinator-group.test.ts.
 */
import { type Patch, RolloutRequestSchema, storedPatch } from '@fleetpatch/shared';
import pino from 'pino';
import { afterEach, expect, it, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AgentOutbox } from '../src/group/agent-outbox.js';
import { DedicatedConnection } from '../src/group/dedicated-connection.js';
import { EngineStepLock } from '../src/group/engine-step-lock.js';
import { EventTail } from '../src/group/event-tail.js';
import { GroupPresence } from '../src/group/group-presence.js';
import { RolloutLeases } from '../src/group/rollout-leases.js';
import { OneAtATime } from '../src/store/one-at-a-time.js';
import type { PostgresBackend } from '../src/store/postgres/postgres-backend.js';
import type { PostgresExecutor } from '../src/store/postgres/postgres-executor.js';
import { Store } from '../src/store/store.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';

const log = pino({ level: 'silent' });
const at = (second: number) => new Date(Date.UTC(2030, 0, 7, 12, 0, second)).toISOString();
const request = RolloutRequestSchema.parse({ patchId: 'pat_1', target: { hostIds: ['web-1'] } });
const patch: Patch = storedPatch(SAMPLE_PATCH_SPEC, { id: 'pat_1', createdBy: 'alice', createdAt: at(0) });

describeNeeding(postgresCluster, 'the parts of a coordinator group on PostgreSQL', () => {
  const cluster = () => runPostgresCluster();
  const opened: { close(): Promise<void> }[] = [];
  afterEach(async () => {
    for (const thing of opened.splice(0).reverse()) await thing.close();
  });

  /** `n` members' stores on one fresh database, with rollouts `ids` in state `running`. */
  async function members(n: number, ids: readonly string[] = []): Promise<Store[]> {
    const url = await cluster().createDatabase();
    const stores: Store[] = [];
    for (let i = 0; i < n; i++) {
      const store = await Store.openPostgres(url);
      opened.push(store);
      stores.push(store);
    }
    const [first] = stores;
    if (first && ids.length > 0) {
      await first.patches.insert(patch);
      for (const id of ids) {
        await first.rollouts.insert({ id, patchId: 'pat_1', request, state: 'running', createdBy: 'alice' }, at(1));
      }
    }
    return stores;
  }
  const executorOf = (store: Store): PostgresExecutor => (store.backend as PostgresBackend).executor;

  it('leases: one driver per rollout; a lease taken over after expiry carries the next fencing token', async () => {
    const [a, b] = await members(2, ['ro_1', 'ro_2']);
    const leaseA = new RolloutLeases(executorOf(a as Store), 'c1', 60_000);
    const leaseB = new RolloutLeases(executorOf(b as Store), 'c2', 60_000);
    expect(await leaseA.acquire(['ro_2', 'ro_1'])).toEqual(['ro_1', 'ro_2']);
    // Held by c1: c2 gets nothing, and renewing tells c1 nothing new.
    expect(await leaseB.acquire(['ro_1', 'ro_2'])).toEqual([]);
    expect(leaseB.drives('ro_1')).toBe(false);
    expect(await leaseA.acquire(['ro_1', 'ro_2'])).toEqual([]);
    expect(leaseA.drives('ro_1')).toBe(true);
    expect(await leaseA.confirm('ro_1')).toBe(true);
    expect((await leaseA.all()).map((l) => [l.rolloutId, l.holder, l.token])).toEqual([
      ['ro_1', 'c1', 1],
      ['ro_2', 'c1', 1],
    ]);
    // c1 stops renewing (it died, or stalled) until its leases expire by the database's clock.
    await executorOf(a as Store).query("UPDATE rollout_leases SET expires_at = now() - interval '1 second'");
    expect(await leaseB.acquire(['ro_1', 'ro_2'])).toEqual(['ro_1', 'ro_2']);
    expect((await leaseB.all()).map((l) => [l.rolloutId, l.holder, l.token])).toEqual([
      ['ro_1', 'c2', 2],
      ['ro_2', 'c2', 2],
    ]);
    // The fence: c1's token is no longer the lease's, whatever c1 still believes.
    expect(await leaseA.confirm('ro_1')).toBe(false);
    expect(leaseA.drives('ro_1')).toBe(false);
  });

  it('leases: a driver stops trusting its lease after 80 % of it, counted from when it asked', async () => {
    const [a] = await members(1, ['ro_1']);
    const leases = new RolloutLeases(executorOf(a as Store), 'c1', 500);
    // Read once acquire has begun: it takes its own time before its first await, so this is not earlier.
    const acquiring = leases.acquire(['ro_1']);
    const askedAt = performance.now();
    await acquiring;
    while (performance.now() - askedAt < 400) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(leases.drives('ro_1')).toBe(false);
  });

  it('leases: a finished rollout is leased by nobody; a released lease keeps its token for the next driver', async () => {
    const [a, b] = await members(2, ['ro_1']);
    const leaseA = new RolloutLeases(executorOf(a as Store), 'c1', 60_000);
    const leaseB = new RolloutLeases(executorOf(b as Store), 'c2', 60_000);
    expect(await leaseA.acquire(['ro_1'])).toEqual(['ro_1']);
    await leaseA.release(['ro_1']);
    expect(leaseA.drives('ro_1')).toBe(false);
    // Handed over at once (an orderly shutdown), with the next token: never one c1 might still hold.
    expect(await leaseB.acquire(['ro_1'])).toEqual(['ro_1']);
    expect((await leaseB.all()).map((l) => [l.holder, l.token])).toEqual([['c2', 2]]);
    await executorOf(a as Store).query("UPDATE rollouts SET state = 'succeeded' WHERE id = 'ro_1'");
    await leaseB.release(['ro_1']);
    expect(await leaseA.acquire(['ro_1'])).toEqual([]);
    expect(await leaseA.all()).toEqual([]);
  });

  it('the engine step lock: steps of two members never overlap', async () => {
    const url = await cluster().createDatabase();
    const connections = [new DedicatedConnection(url), new DedicatedConnection(url)];
    opened.push(...connections);
    const steps = connections.map((c) => new OneAtATime(new EngineStepLock(c)));
    const trace: string[] = [];
    const step = (who: string) => async () => {
      trace.push(`${who} in`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      trace.push(`${who} out`);
    };
    await Promise.all([
      steps[0]?.run(step('a1')),
      steps[1]?.run(step('b1')),
      steps[0]?.run(step('a2')),
      steps[1]?.run(step('b2')),
    ]);
    expect(trace).toHaveLength(8);
    for (let i = 0; i < trace.length; i += 2) {
      const who = trace[i]?.split(' ')[0];
      expect([trace[i], trace[i + 1]]).toEqual([`${who} in`, `${who} out`]);
    }
  });

  it('the outbox: each message is claimed once, by one member, in the order it was written', async () => {
    const [a, b, c] = await members(3);
    const outbox = new AgentOutbox(executorOf(a as Store), log);
    for (let i = 0; i < 50; i++) outbox.enqueue(`web-${i % 5}`, { type: 'order.cancel', orderId: `ord_${i}` });
    await outbox.drain();
    const claimers = [new AgentOutbox(executorOf(b as Store), log), new AgentOutbox(executorOf(c as Store), log)];
    const agents = ['web-0', 'web-1', 'web-2', 'web-3', 'web-4'];
    // Both claim every agent's messages at once: SKIP LOCKED hands each row to one of them.
    const [first, second] = await Promise.all(claimers.map((claimer) => claimer.claim(agents)));
    const claimed = [...(first ?? []), ...(second ?? [])];
    expect(claimed).toHaveLength(50);
    const orderIds = claimed.map((m) => (m.message as { orderId: string }).orderId);
    expect(new Set(orderIds).size).toBe(50);
    for (const batch of [first ?? [], second ?? []]) {
      const numbers = batch.map((m) => Number((m.message as { orderId: string }).orderId.slice(4)));
      expect(numbers).toEqual([...numbers].sort((x, y) => x - y));
    }
    expect(await claimers[0]?.claim(agents)).toEqual([]);
  });

  it('presence: an agent counts as online elsewhere only while its coordinator beats', async () => {
    const [a, b] = await members(2);
    const here = new GroupPresence(executorOf(a as Store), 'c1', 60_000);
    const there = new GroupPresence(executorOf(b as Store), 'c2', 60_000);
    await here.join();
    await there.join();
    await there.connected('web-1', 6);
    await here.heartbeat();
    expect(here.isOnlineElsewhere('web-1')).toBe(true);
    expect(here.protocolVersionElsewhere('web-1')).toBe(6);
    expect((await here.members()).map((m) => [m.id, m.agents])).toEqual([
      ['c1', 0],
      ['c2', 1],
    ]);
    // c2 stops beating (SIGKILLed) for longer than staleMs: its agents are nobody's.
    await executorOf(a as Store).query(
      "UPDATE coordinators SET heartbeat_at = now() - interval '1 hour' WHERE id = 'c2'",
    );
    await here.heartbeat();
    expect(here.isOnlineElsewhere('web-1')).toBe(false);
    expect((await here.members()).map((m) => m.id)).toEqual(['c1']);
    // The agent moves here; c2's late "disconnected" does not remove the new row.
    await here.connected('web-1', 6);
    await there.disconnected('web-1');
    await there.heartbeat();
    expect(there.isOnlineElsewhere('web-1')).toBe(true);
  });

  it('presence: the rows said in one turn go in one statement, each agent’s last word wins, and a later word is written later', async () => {
    const [a] = await members(1);
    const executor = executorOf(a as Store);
    const presence = new GroupPresence(executor, 'c1', 60_000);
    await presence.join();
    const rows = async () =>
      (
        await executor.query<{ agent_id: string; protocol_version: number | null }>(
          'SELECT agent_id, protocol_version FROM agent_connections ORDER BY agent_id',
        )
      ).map((row) => `${row.agent_id}@${row.protocol_version}`);
    const query = vi.spyOn(executor, 'query');
    const writes = () =>
      query.mock.calls.filter(([text]) => /^\s*(INSERT INTO|DELETE FROM) agent_connections/.test(text)).length;
    // A storm's worth in one turn: one statement for those gone, one for those here. web-3 came and
    // went, web-5 went and came back.
    await Promise.all([
      presence.connected('web-1', 6),
      presence.connected('web-2', 7),
      presence.connected('web-3', 7),
      presence.disconnected('web-3'),
      presence.connected('web-4', undefined),
      presence.disconnected('web-5'),
      presence.connected('web-5', 7),
    ]);
    expect(writes()).toBe(2);
    expect(await rows()).toEqual(['web-1@6', 'web-2@7', 'web-4@null', 'web-5@7']);
    // Gone, and back while that write is on its way: written after it, so the row is there.
    const gone = presence.disconnected('web-1');
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes()).toBe(3); // sent
    const back = presence.connected('web-1', 8);
    await Promise.all([gone, back]);
    expect(writes()).toBe(4);
    expect(await rows()).toEqual(['web-1@8', 'web-2@7', 'web-4@null', 'web-5@7']);
    // A write that fails (the database restarting) is not lost: the next heartbeat writes its rows.
    query.mockRejectedValueOnce(new Error('connection terminated'));
    await expect(Promise.all([presence.connected('web-7', 8), presence.disconnected('web-2')])).rejects.toThrow(
      'connection terminated',
    );
    expect(await rows()).toEqual(['web-1@8', 'web-2@7', 'web-4@null', 'web-5@7']);
    await presence.heartbeat();
    expect(await rows()).toEqual(['web-1@8', 'web-4@null', 'web-5@7', 'web-7@8']);
    // Unless the agent was said of again while that write was failing: its later word wins.
    let fail = () => {};
    query.mockImplementationOnce(
      () =>
        new Promise((_, reject) => {
          fail = () => reject(new Error('connection terminated'));
        }),
    );
    const sent = writes();
    const failed = presence.connected('web-4', 8);
    await vi.waitFor(() => expect(writes()).toBe(sent + 1));
    const later = presence.disconnected('web-4');
    fail();
    await expect(failed).rejects.toThrow('connection terminated');
    await later;
    expect(await rows()).toEqual(['web-1@8', 'web-5@7', 'web-7@8']);
    // Leaving waits for what is still to be written, so nothing of this coordinator is left behind.
    void presence.connected('web-6', 8);
    await presence.leave();
    expect(await rows()).toEqual([]);
  });

  it('presence: two members trading hundreds of agents both ways at once (a network reset) both write, and every row ends with its holder', async () => {
    const [a, b] = await members(2);
    const one = new GroupPresence(executorOf(a as Store), 'c1', 60_000);
    const other = new GroupPresence(executorOf(b as Store), 'c2', 60_000);
    await one.join();
    await other.join();
    const ids = (prefix: string) => Array.from({ length: 300 }, (_, i) => `${prefix}-${String(i).padStart(3, '0')}`);
    let [onOne, onOther] = [ids('web'), ids('db')];
    await Promise.all([...onOne.map((id) => one.connected(id, 7)), ...onOther.map((id) => other.connected(id, 7))]);
    for (let round = 0; round < 3; round++) {
      // Each says goodbye to its agents and hello to the other's, in one turn, at the same time.
      await Promise.all([
        ...onOne.map((id) => one.disconnected(id)),
        ...onOther.map((id) => one.connected(id, 8)),
        ...onOther.map((id) => other.disconnected(id)),
        ...onOne.map((id) => other.connected(id, 8)),
      ]);
      [onOne, onOther] = [onOther, onOne];
    }
    const holders = await executorOf(a as Store).query<{ agent_id: string; coordinator_id: string }>(
      'SELECT agent_id, coordinator_id FROM agent_connections',
    );
    const held = (by: string) =>
      holders
        .filter((row) => row.coordinator_id === by)
        .map((row) => row.agent_id)
        .sort();
    expect(held('c1')).toEqual([...onOne].sort());
    expect(held('c2')).toEqual([...onOther].sort());
  });

  it('the event tail: a member streams every event of the group once, in seq order, its own included', async () => {
    const [a, b] = await members(2, ['ro_1']);
    const storeA = a as Store;
    const storeB = b as Store;
    const tail = new EventTail(storeB, log, 60_000);
    opened.push({ close: async () => tail.stop() });
    await tail.start();
    const streamed: number[] = [];
    storeB.onStreamEvent((event) => streamed.push(event.seq));
    // Both members commit events, interleaved.
    const appended: number[] = [];
    for (let i = 0; i < 10; i++) {
      const store = i % 2 === 0 ? storeA : storeB;
      const record = await store.transaction(() =>
        store.appendEvent({ rolloutId: 'ro_1', actor: 'system', type: 'wave.started', data: { i } }, at(i)),
      );
      appended.push(record.seq);
    }
    await tail.caughtUp();
    expect(streamed).toEqual(appended);
    expect(appended).toEqual([...appended].sort((x, y) => x - y));
  });
});
