/**
 * One agent's report that the store refuses for its data (a constraint, a value PostgreSQL cannot
 * hold) no longer holds every other agent's report behind it: the failed batch is taken apart, the
 * others are recorded and acknowledged, and the refused one is tried again, then dropped
 * unacknowledged, for its agent to report again (a result unasked, after a wait: test/result-redelivery.test.ts;
 * anything at its next hello). The refusal is a real one, a
 * trigger in the store, on SQLite and (in the coordinator-postgres project) on PostgreSQL alike.
 */
import { expect, it } from 'vitest';
import { connectAsAgent, type RawPeer, sampleHello } from '../../../test/support/raw-agent-socket.js';
import { capturingLog } from './support/capturing-log.js';
import { enrollAgent } from './support/enroll-agent.js';
import { SimulatedFleet, STORE_KIND } from './support/simulated-fleet.js';
import { startTestCoordinator, TOKENS } from './support/test-coordinator.js';

/** The store refuses to record `hostId` healthy, as a CHECK constraint would (SQLITE_CONSTRAINT_TRIGGER, 23514). */
const REFUSE_HEALTHY = {
  sqlite: (hostId: string) => `
    CREATE TRIGGER refuse_healthy BEFORE UPDATE ON host_runs
    WHEN NEW.host_id = '${hostId}' AND NEW.state = 'healthy'
    BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;`,
  postgres: (hostId: string) => `
    CREATE FUNCTION refuse_healthy() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.host_id = '${hostId}' AND NEW.state = 'healthy' THEN
        RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'check_violation';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_healthy BEFORE UPDATE ON host_runs FOR EACH ROW EXECUTE FUNCTION refuse_healthy();`,
};
const ALLOW_HEALTHY = {
  sqlite: 'DROP TRIGGER refuse_healthy',
  postgres: 'DROP TRIGGER refuse_healthy ON host_runs; DROP FUNCTION refuse_healthy()',
};

it('a report the store refuses is set aside: the others are recorded and acked, it is tried twice more, then dropped unacked for its agent to report again', async () => {
  const { log, lines } = capturingLog();
  const dropped: string[] = [];
  const fleet = await SimulatedFleet.open({ log, onReportDropped: (kind) => dropped.push(kind) });
  const hosts = ['host-1', 'host-2', 'host-3', 'host-4'];
  await fleet.addHosts(hosts);
  const id = await fleet.launch({ waves: ['100%'] });
  await fleet.editByHand(REFUSE_HEALTHY[STORE_KIND]('host-3'));
  const refusedOrder = fleet.mustOpenApply('host-3').orderId;

  // One burst: all four results in one batch, whose transaction the store refuses for host-3's.
  for (const host of hosts) fleet.report(host, fleet.mustOpenApply(host), 'healthy', true);
  await expect
    .poll(async () => await fleet.hostStates(id), { timeout: 5000, interval: 10 })
    .toEqual({ 'host-1': 'healthy', 'host-2': 'healthy', 'host-3': 'dispatched', 'host-4': 'healthy' });
  expect(
    fleet
      .sentOf('order.ack')
      .map((s) => s.agentId)
      .sort(),
  ).toEqual(['host-1', 'host-2', 'host-4']);

  // Tried again with each retry (a second apart), alone, and refused alone each time; then dropped.
  await expect.poll(() => dropped, { timeout: 5000, interval: 20 }).toEqual(['result']);
  const refusals = lines.filter((l) => l.agentId === 'host-3' && /the store refused an agent report/.test(l.msg));
  expect(refusals.map((l) => [l.level, l.refusals, l.kind, l.orderId])).toEqual([
    [50, 1, 'result', refusedOrder],
    [50, 2, 'result', refusedOrder],
    [50, 3, 'result', refusedOrder],
  ]);
  expect(refusals[2]?.msg).toMatch(
    /dropped unacknowledged: its agent sends a result again unasked, and any report at its next hello/,
  );
  // Not an outage: the batch was never held whole.
  expect(lines.filter((l) => /recording agent reports failed/.test(l.msg))).toEqual([]);
  await fleet.engine.whenIdle();
  expect(fleet.sentOf('order.ack', 'host-3')).toEqual([]);
  expect((await fleet.run(id, 'host-3')).state).toBe('dispatched');

  // The cause mended, the agent's next hello carries the result it still holds: recorded, acked.
  await fleet.editByHand(ALLOW_HEALTHY[STORE_KIND]);
  await fleet.connect('host-3');
  expect((await fleet.run(id, 'host-3')).state).toBe('healthy');
  expect(fleet.sentOf('order.ack', 'host-3')).toHaveLength(1);
  expect(await fleet.state(id)).toBe('succeeded');
  expect((await fleet.events(id)).filter((e) => e.type === 'host.healthy')).toHaveLength(4);
});

it("on a real coordinator: a hello the store refuses is dropped after three tries and counted in /metrics; another agent's hello is recorded at once", async () => {
  const coordinator = await startTestCoordinator({ host: '127.0.0.1', port: 0 });
  const peers: RawPeer[] = [];
  try {
    const { app } = coordinator;
    await app.listen({ host: '127.0.0.1', port: 0 });
    const port = (app.server.address() as { port: number }).port;
    const refused = await enrollAgent(app, TOKENS.admin, 'refused-1');
    const honest = await enrollAgent(app, TOKENS.admin, 'honest-1');
    // SQLite here (the PostgreSQL refusal is the first test's, in the coordinator-postgres project).
    app.fleet.store.db.exec(`
      CREATE TRIGGER refuse_hello BEFORE UPDATE OF agent_version ON agents WHEN NEW.id = 'refused-1'
      BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;`);

    const one = await connectAsAgent(port, 'refused-1', refused.privateKey, { hello: sampleHello('refused-1.0') });
    peers.push(one.peer);
    const two = await connectAsAgent(port, 'honest-1', honest.privateKey, { hello: sampleHello('honest-1.0') });
    peers.push(two.peer);
    expect([one.welcomed, two.welcomed]).toEqual([true, true]);

    await expect.poll(async () => (await app.fleet.store.agents.get('honest-1'))?.agentVersion).toBe('honest-1.0');
    const dropped = async () => {
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /^fleetpatch_agent_reports_dropped_total\{kind="hello"\} (\d+)$/m.exec(body)?.[1];
    };
    await expect.poll(dropped, { timeout: 5000, interval: 50 }).toBe('1');
    expect((await app.fleet.store.agents.get('refused-1'))?.agentVersion).not.toBe('refused-1.0');
    const refusals = coordinator.logLines.filter((l) => /the store refused an agent report/.test(l.msg));
    expect(refusals.map((l) => [l.agentId, l.kind, l.refusals])).toEqual([
      ['refused-1', 'hello', 1],
      ['refused-1', 'hello', 2],
      ['refused-1', 'hello', 3],
    ]);
  } finally {
    for (const peer of peers) peer.destroy();
    await coordinator.close();
  }
});

it("an honest host's health row is recorded although another host's report in its batch was refused", async () => {
  // The attempts rolled back around the refused report must leave the live-health board as it was:
  // else the attempt that commits finds "nothing new" and writes no row.
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['host-1', 'host-2']);
  const id = await fleet.launch({ waves: ['100%'] });
  await fleet.progress('host-1', 'verifying');
  await fleet.editByHand(REFUSE_HEALTHY[STORE_KIND]('host-2'));
  // One burst: host-1's first health poll, then host-2's result, which the store refuses.
  const poll = fleet.healthPoll('host-1', { web: 'HTTP 500' }, 1);
  fleet.report('host-2', fleet.mustOpenApply('host-2'), 'healthy', true);
  await poll;
  await fleet.engine.whenIdle();
  const rows = (await fleet.events(id)).filter((e) => e.type === 'host.health' && e.hostId === 'host-1');
  expect(rows).toHaveLength(1);
});

it('a hello carrying a result the store refuses is recorded apart from it: the agent is seen, the result alone is dropped', async () => {
  const dropped: string[] = [];
  const fleet = await SimulatedFleet.open({ onReportDropped: (kind) => dropped.push(kind) });
  await fleet.addHosts(['host-1', 'host-2']);
  const id = await fleet.launch({ waves: ['100%'] });
  await fleet.editByHand(REFUSE_HEALTHY[STORE_KIND]('host-2'));
  // host-2 finishes while away: its result waits in its journal for the next hello.
  fleet.disconnect('host-2');
  fleet.report('host-2', fleet.mustOpenApply('host-2'), 'healthy', true);
  const seenBefore = (await fleet.store.agents.get('host-2'))?.lastSeenAt;
  fleet.now += 60_000;
  fleet.hello('host-2');
  await expect.poll(() => dropped, { timeout: 5000, interval: 20 }).toEqual(['result']);
  await fleet.engine.whenIdle();
  // The hello itself was recorded (the agent is seen again); only the refused result is not.
  expect((await fleet.store.agents.get('host-2'))?.lastSeenAt).not.toBe(seenBefore);
  expect((await fleet.run(id, 'host-2')).state).toBe('dispatched');
  expect(fleet.sentOf('order.ack', 'host-2')).toEqual([]);
});

it("an honest agent's agent.connected row is written although its hello shared a batch with a refused report", async () => {
  // The connected audit notes a hello as it decides on its row; the attempts rolled back around the
  // refused report must not leave it noted, or the attempt that commits writes no row.
  const fleet = await SimulatedFleet.open();
  await fleet.addHosts(['host-1', 'host-2']);
  await fleet.launch({ waves: ['100%'] });
  await fleet.editByHand(REFUSE_HEALTHY[STORE_KIND]('host-2'));
  const connectedRows = async () =>
    (await fleet.store.allEvents(0, 100_000)).filter((e) => e.type === 'agent.connected' && e.hostId === 'host-1');
  const before = (await connectedRows()).length;
  fleet.now += 120_000; // past the connected audit's window: this hello is news
  // One burst: host-1's hello (noted as its row is decided), then host-2's result, which the store refuses.
  fleet.hello('host-1');
  fleet.report('host-2', fleet.mustOpenApply('host-2'), 'healthy', true);
  await fleet.engine.whenIdle();
  expect(await connectedRows()).toHaveLength(before + 1);
});
