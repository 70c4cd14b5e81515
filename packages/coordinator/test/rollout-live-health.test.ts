/**
 * Live health: while a host verifies or bakes, its agent reports every poll; the status shows the
 * latest results of the host's current order (which check, what it saw, since when, failing polls
 * in a row), and the audit trail (so the event stream) gets a `host.health` row only when something
 * changed — not one per poll. A retried host never shows the previous attempt's results.
 */
import { WIRE_LIMITS } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { LIVE_HEALTH_EVENT_INTERVAL_MS } from '../src/engine/live-health.js';
import { RolloutView } from '../src/engine/rollout-view.js';
import { hosts, SECOND, SimulatedFleet } from './support/simulated-fleet.js';

function viewOf(fleet: SimulatedFleet): RolloutView {
  return new RolloutView(
    fleet.store,
    () => true,
    () => undefined,
    (orderId) => fleet.engine.liveHealth.of(orderId),
  );
}

async function hostView(fleet: SimulatedFleet, rolloutId: string, hostId: string) {
  const host = (await viewOf(fleet).status(rolloutId)).waves.flatMap((w) => w.hosts).find((h) => h.hostId === hostId);
  if (!host) throw new Error(`${hostId} is not in rollout ${rolloutId}`);
  return host;
}

const healthEvents = async (fleet: SimulatedFleet, id: string) =>
  (await fleet.events(id)).filter((e) => e.type === 'host.health');

describe('live health while verifying', () => {
  it('the status shows the latest poll: what each check saw, since when, and failing polls in a row', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    const first = new Date(fleet.now).toISOString();
    await fleet.healthPoll('host-1', { web: 'HTTP 500', db: true }, 1);
    fleet.now += 2 * SECOND;
    await fleet.healthPoll('host-1', { web: 'HTTP 500', db: true }, 2);

    expect(await hostView(fleet, id, 'host-1')).toMatchObject({
      state: 'verifying',
      health: null,
      liveHealth: {
        phase: 'verifying',
        failingPolls: 2,
        updatedAt: new Date(fleet.now).toISOString(),
        checks: [
          { check: 'web', ok: false, observed: 'HTTP 500', since: first, at: new Date(fleet.now).toISOString() },
          { check: 'db', ok: true, observed: 'HTTP 200', since: first },
        ],
      },
    });
  });

  it('counts failing polls itself for an agent that does not (protocol 4 and older)', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    await fleet.healthPoll('host-1', { web: 'HTTP 500' });
    await fleet.healthPoll('host-1', { web: 'HTTP 500' });
    expect((await hostView(fleet, id, 'host-1')).liveHealth?.failingPolls).toBe(2);
    await fleet.healthPoll('host-1', { web: true });
    expect((await hostView(fleet, id, 'host-1')).liveHealth?.failingPolls).toBe(0);
  });

  it('puts a poll on the record when a verdict changes, not once per poll', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    for (let i = 1; i <= 5; i++) {
      await fleet.healthPoll('host-1', { web: 'HTTP 500' }, i);
      fleet.now += SECOND;
    }
    await fleet.healthPoll('host-1', { web: true }, 0);
    await fleet.healthPoll('host-1', { web: true }, 0);

    const events = await healthEvents(fleet, id);
    expect(events.map((e) => e.data)).toEqual([
      {
        orderId: expect.any(String),
        phase: 'verifying',
        failingPolls: 1,
        checks: [{ check: 'web', kind: 'http', ok: false, observed: 'HTTP 500', since: expect.any(String) }],
      },
      {
        orderId: expect.any(String),
        phase: 'verifying',
        failingPolls: 0,
        checks: [{ check: 'web', kind: 'http', ok: true, observed: 'HTTP 200', since: expect.any(String) }],
      },
    ]);
    expect(events.every((e) => e.hostId === 'host-1' && e.actor === 'host-1')).toBe(true);
  });

  it('a changed observation with the same verdict goes on the record at most once per interval', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    await fleet.healthPoll('host-1', { web: 'HTTP 500' });
    fleet.now += SECOND;
    await fleet.healthPoll('host-1', { web: 'HTTP 502' });
    expect(await healthEvents(fleet, id)).toHaveLength(1);
    fleet.now += LIVE_HEALTH_EVENT_INTERVAL_MS;
    await fleet.healthPoll('host-1', { web: 'HTTP 503' });
    // Unchanged since the last row: nothing more, however long it has been.
    fleet.now += LIVE_HEALTH_EVENT_INTERVAL_MS;
    await fleet.healthPoll('host-1', { web: 'HTTP 503' });
    expect(
      (await healthEvents(fleet, id)).map((e) => (e.data as { checks: { observed: string }[] }).checks[0]?.observed),
    ).toEqual(['HTTP 500', 'HTTP 503']);
    // The status is live all the same.
    expect((await hostView(fleet, id, 'host-1')).liveHealth?.checks[0]?.observed).toBe('HTTP 503');
  });

  it('ignores health from a host that is not verifying or baking, and from another host', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(3));
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1 });
    // A poll that comes in late, after the host failed: no live health.
    await fleet.finish('host-3', 'failed');
    await fleet.healthPoll('host-3', { web: 'HTTP 500' });
    expect((await hostView(fleet, id, 'host-3')).liveHealth).toBeUndefined();
    // host-2 reporting host-1's order is ignored.
    const order = fleet.agent('host-1').latestApply()?.orderId as string;
    fleet.engine.onOrderProgress('host-2', {
      type: 'order.progress',
      orderId: order,
      phase: 'verifying',
      health: [{ check: 'web', kind: 'http', ok: false, observed: 'x', at: new Date(fleet.now).toISOString() }],
    });
    await fleet.engine.whenIdle();
    expect((await hostView(fleet, id, 'host-1')).liveHealth).toBeUndefined();
    expect(await healthEvents(fleet, id)).toEqual([]);
  });
});

describe('live health while baking', () => {
  it('a healthy host polled during its bake shows phase baking, and that change is on the record', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const id = await fleet.launch({ waves: [1, '100%'], bakeSeconds: 60 });
    await fleet.progress('host-1', 'verifying');
    await fleet.healthPoll('host-1', { web: true }, 0);
    await fleet.finish('host-1');
    await fleet.healthPoll('host-1', { web: 'HTTP 500' }, 1);
    expect(await hostView(fleet, id, 'host-1')).toMatchObject({
      state: 'healthy',
      liveHealth: { phase: 'baking', failingPolls: 1, checks: [{ ok: false, observed: 'HTTP 500' }] },
    });
    expect((await healthEvents(fleet, id)).map((e) => e.data?.phase)).toEqual(['verifying', 'baking']);
  });
});

describe('live health a host cannot make endless', () => {
  it('a healthy host that goes on reporting health once its rollout is over puts nothing on the record', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.finish('host-1');
    expect(await fleet.state(id)).toBe('succeeded');
    const before = (await fleet.events(id)).length;
    for (let i = 0; i < 5; i++) await fleet.healthPoll('host-1', { web: i % 2 === 0 ? 'HTTP 500' : true });
    expect(await fleet.events(id)).toHaveLength(before);
  });

  it('records labels, kinds and times cut to their wire limits, however long the host sends them', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    const order = fleet.agent('host-1').latestApply()?.orderId as string;
    const huge = 'x'.repeat(1024 * 1024);
    fleet.engine.onOrderProgress('host-1', {
      type: 'order.progress',
      orderId: order,
      phase: 'verifying',
      health: [{ check: `web ${huge}`, kind: `http${huge}`, ok: false, observed: 'HTTP 500', at: `2026${huge}` }],
    });
    await fleet.engine.whenIdle();
    const rows = await healthEvents(fleet, id);
    expect(rows).toHaveLength(1);
    const row = rows[0];
    const [check] = (row?.data as { checks: { check: string; kind: string }[] } | undefined)?.checks ?? [];
    expect(check?.check).toHaveLength(WIRE_LIMITS.healthLabelChars);
    expect(check?.check.endsWith('…')).toBe(true);
    expect(check?.kind).toHaveLength(WIRE_LIMITS.healthKindChars);
    expect(JSON.stringify(row).length).toBeLessThan(WIRE_LIMITS.healthLabelChars + 1000);
  });
});

describe('live health and retry', () => {
  it('a retried host shows neither the previous attempt’s result health nor its live health', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'] });
    await fleet.progress('host-1', 'verifying');
    await fleet.healthPoll('host-1', { web: 'HTTP 500' }, 1);
    const entry = fleet.agent('host-1').openApply();
    if (!entry) throw new Error('no open apply');
    const failing = [
      { check: 'web', kind: 'http', ok: false, observed: 'HTTP 500', at: new Date(fleet.now).toISOString() },
    ];
    fleet.report('host-1', entry, 'failed', false, undefined, failing);
    await fleet.engine.whenIdle();
    expect((await fleet.rollout(id)).state).toBe('halted');
    expect((await hostView(fleet, id, 'host-1')).health).toEqual(failing);

    await fleet.engine.retry(id, 'alice');
    await fleet.engine.whenIdle();
    const host = await hostView(fleet, id, 'host-1');
    expect(host.state).toBe('dispatched');
    expect(host.health).toBeNull();
    expect(host.liveHealth).toBeUndefined();
  });

  it('a failed result takes the order off the board: the result speaks for it', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(1));
    const id = await fleet.launch({ waves: ['100%'], maxFailures: 1 });
    await fleet.progress('host-1', 'verifying');
    await fleet.healthPoll('host-1', { web: 'HTTP 500' }, 1);
    await fleet.finish('host-1', 'failed');
    expect((await hostView(fleet, id, 'host-1')).liveHealth).toBeUndefined();
  });
});
