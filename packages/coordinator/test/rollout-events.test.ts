import { describe, expect, it } from 'vitest';
import { hosts, SimulatedFleet } from './support/simulated-fleet.js';

// ---- audit -------------------------------------------------------------------------------------

describe('audit', () => {
  it('every verb appends an event with the actor and the from/to states, in seq order', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const { id } = await fleet.create({ waves: [1, '100%'], requiredApprovals: 1, maxFailures: 0 }, 'alice');
    await fleet.engine.approve(id, 'bob');
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.engine.pause(id, 'carol');
    await fleet.engine.resume(id, 'dave');
    await fleet.engine.whenIdle();
    await fleet.finish('host-1', 'failed');
    await fleet.engine.retry(id, 'erin');
    await fleet.engine.whenIdle();
    await fleet.finish('host-1');
    await fleet.finish('host-2');
    await fleet.engine.revert(id, 'frank');
    await fleet.engine.whenIdle();
    await fleet.finishRevert('host-1');
    await fleet.finishRevert('host-2');

    const events = await fleet.events(id);
    const seqs = events.map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);

    const rolloutEvents = events
      .filter((e) => e.type.startsWith('rollout.'))
      .map((e) => [e.type, e.actor, e.fromState, e.toState]);
    expect(rolloutEvents).toEqual([
      ['rollout.created', 'alice', null, 'awaiting_approval'],
      ['rollout.approved', 'bob', null, null],
      ['rollout.scheduled', 'bob', 'awaiting_approval', 'scheduled'],
      ['rollout.running', 'alice', 'scheduled', 'running'],
      ['rollout.paused', 'carol', 'running', 'paused'],
      ['rollout.running', 'dave', 'paused', 'running'],
      ['rollout.halted', 'system', 'running', 'halted'],
      ['rollout.running', 'erin', 'halted', 'running'],
      ['rollout.succeeded', 'system', 'running', 'succeeded'],
      ['rollout.reverting', 'frank', 'succeeded', 'reverting'],
      ['rollout.reverted', 'system', 'reverting', 'reverted'],
    ]);
    // What agents report is recorded under the agent's name.
    for (const e of events.filter((e) => e.type === 'host.healthy' || e.type === 'host.reverted')) {
      expect(e.actor).toBe(e.hostId);
    }
  });
});
