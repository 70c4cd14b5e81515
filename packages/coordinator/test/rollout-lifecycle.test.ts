/**
 * Specification of the rollout engine, by example: which verb is legal from which state, and scheduled starts. The real `RolloutEngine` over a real
 * SQLite `Store` (one file per test), driven through the simulated fleet of `support/simulated-fleet.ts`.
 */
import { ErrorCode, ROLLOUT_STATES, type RolloutState } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { VERB_TRANSITIONS, type Verb } from '../src/engine/rollout-states.js';
import { refusal } from './support/refusal.js';
import { hosts, SECOND, SimulatedFleet, T0 } from './support/simulated-fleet.js';

// ---- illegal verbs -----------------------------------------------------------------------------

/** Drives a fresh rollout into `state` using only verbs and agent answers; returns its id. */
async function reach(fleet: SimulatedFleet, state: RolloutState): Promise<string> {
  await fleet.addHosts(['h-1', 'h-2']);
  const oneHost = { target: { hostIds: ['h-1'] } };
  switch (state) {
    case 'draft':
      return (await fleet.create({ draft: true, requiredApprovals: 1 })).id;
    case 'awaiting_approval':
      return (await fleet.create({ requiredApprovals: 1 })).id;
    case 'scheduled':
      return (await fleet.create()).id;
    case 'running':
      return fleet.launch({ maxParallel: 1 });
    case 'paused': {
      const id = await fleet.launch({ maxParallel: 1 });
      await fleet.engine.pause(id, 'alice');
      return id;
    }
    case 'aborted': {
      // Aborted once it ran: one aborted before it started cannot be retried (rollout-approval.test.ts).
      const id = await fleet.launch({ maxParallel: 1 });
      await fleet.engine.abort(id, 'alice', null);
      // Its one host in flight answers the cancel (a retry waits for that: engine-races.test.ts).
      await fleet.finish('h-1', 'cancelled', false);
      return id;
    }
    case 'halted': {
      const id = await fleet.launch(oneHost);
      await fleet.finish('h-1', 'failed');
      return id;
    }
    default: {
      const id = await fleet.launch(oneHost);
      await fleet.finish('h-1');
      if (state === 'succeeded') return id;
      await fleet.engine.revert(id, 'alice');
      await fleet.engine.whenIdle();
      if (state === 'reverting') return id;
      await fleet.finishRevert('h-1', state === 'reverted' ? 'reverted' : 'revert_failed');
      return id;
    }
  }
}

async function callVerb(fleet: SimulatedFleet, verb: Verb, id: string): Promise<void> {
  switch (verb) {
    case 'submit':
      await fleet.engine.submit(id, 'alice');
      return;
    case 'approve':
      await fleet.engine.approve(id, 'bob');
      return;
    case 'start':
      await fleet.engine.start(id, 'alice');
      return;
    case 'pause':
      await fleet.engine.pause(id, 'alice');
      return;
    case 'resume':
      await fleet.engine.resume(id, 'alice');
      return;
    case 'abort':
      await fleet.engine.abort(id, 'alice', null);
      return;
    case 'retry':
      await fleet.engine.retry(id, 'alice');
      return;
    case 'revert':
      await fleet.engine.revert(id, 'alice');
      return;
  }
}

/** Every state: each one is reached by `reach()` below. */
const REACHABLE: readonly RolloutState[] = ROLLOUT_STATES;

const ILLEGAL = (Object.keys(VERB_TRANSITIONS) as Verb[]).flatMap((verb) =>
  REACHABLE.filter((state) => !(VERB_TRANSITIONS[verb].from as readonly RolloutState[]).includes(state)).map(
    (state) => ({ verb, state }),
  ),
);

describe('a verb from a state where it is illegal', () => {
  it('covers every verb with at least one illegal state', () => {
    expect(new Set(ILLEGAL.map((c) => c.verb))).toEqual(new Set(Object.keys(VERB_TRANSITIONS)));
  });

  it.each(ILLEGAL)(
    '$verb from $state is refused with illegal_transition and changes nothing',
    async ({ verb, state }) => {
      const fleet = await SimulatedFleet.open();
      const id = await reach(fleet, state);
      expect(await fleet.state(id)).toBe(state);
      const before = await fleet.dump();
      const events = (await fleet.events(id)).length;
      const sent = fleet.sent.length;

      const err = await refusal(async () => await callVerb(fleet, verb, id));
      await fleet.engine.whenIdle();

      expect(err.code).toBe(ErrorCode.illegalTransition);
      expect(err.details).toMatchObject({ rolloutId: id, state });
      expect(await fleet.state(id)).toBe(state);
      expect(await fleet.events(id)).toHaveLength(events);
      expect(await fleet.dump()).toBe(before);
      expect(fleet.sent).toHaveLength(sent);
    },
  );

  it('promote outside a bake is refused too', async () => {
    const fleet = await SimulatedFleet.open();
    const id = await reach(fleet, 'running');
    const err = await refusal(async () => await fleet.engine.promote(id, 'alice'));
    expect(err.code).toBe(ErrorCode.illegalTransition);
    expect(err.details).toMatchObject({ state: 'running' });
  });
});

// ---- legal verbs -------------------------------------------------------------------------------

/**
 * The verbs as README.md's table documents them, stated here on their own (not read from
 * `VERB_TRANSITIONS`), so that a verb the engine stops allowing, or starts allowing, fails a test.
 */
const DOCUMENTED_VERBS: Record<Verb, { from: RolloutState[]; to: RolloutState }> = {
  submit: { from: ['draft'], to: 'awaiting_approval' },
  approve: { from: ['awaiting_approval'], to: 'scheduled' },
  start: { from: ['scheduled'], to: 'running' },
  pause: { from: ['running'], to: 'paused' },
  resume: { from: ['paused'], to: 'running' },
  abort: { from: ['draft', 'awaiting_approval', 'scheduled', 'running', 'paused', 'halted'], to: 'aborted' },
  retry: { from: ['halted', 'aborted'], to: 'running' },
  revert: { from: ['running', 'paused', 'succeeded', 'halted', 'aborted', 'revert_failed'], to: 'reverting' },
};

const LEGAL = (Object.keys(DOCUMENTED_VERBS) as Verb[]).flatMap((verb) =>
  DOCUMENTED_VERBS[verb].from.map((state) => ({ verb, state, to: DOCUMENTED_VERBS[verb].to })),
);

describe('a verb from a state where it is legal', () => {
  it('the engine allows exactly the documented verbs', () => {
    expect(VERB_TRANSITIONS).toEqual(DOCUMENTED_VERBS);
  });

  it.each(LEGAL)('$verb from $state moves the rollout to $to, recorded as its event', async ({ verb, state, to }) => {
    const fleet = await SimulatedFleet.open();
    const id = await reach(fleet, state);
    const events = (await fleet.events(id)).length;

    await callVerb(fleet, verb, id);
    await fleet.engine.whenIdle();

    const moves = (await fleet.events(id)).slice(events).filter((e) => e.toState !== null && e.hostId === null);
    expect(moves[0]).toMatchObject({ type: `rollout.${to}`, fromState: state, toState: to });
  });

  it('submit schedules a draft that needs no approval at once', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(['h-1']);
    const { id } = await fleet.create({ draft: true, requiredApprovals: 0 });
    await fleet.engine.submit(id, 'alice');
    expect((await fleet.events(id)).at(-1)).toMatchObject({ type: 'rollout.scheduled', fromState: 'draft' });
  });
});

// ---- start times -------------------------------------------------------------------------------

describe('startAt', () => {
  it('an approved rollout waits in scheduled until startAt, then the ticker starts it as system', async () => {
    const fleet = await SimulatedFleet.open();
    await fleet.addHosts(hosts(2));
    const startAt = T0 + 3600 * SECOND;
    const { id } = await fleet.create({
      waves: ['100%'],
      requiredApprovals: 1,
      startAt: new Date(startAt).toISOString(),
    });
    await fleet.engine.approve(id, 'bob');

    await fleet.advance(3599 * SECOND);
    expect(await fleet.state(id)).toBe('scheduled');
    expect(fleet.sent).toEqual([]);

    await fleet.advance(1 * SECOND);
    expect(await fleet.state(id)).toBe('running');
    expect((await fleet.events(id)).find((e) => e.type === 'rollout.running')).toMatchObject({
      actor: 'system',
      fromState: 'scheduled',
    });
    expect(fleet.appliedHosts()).toEqual(hosts(2));
  });
});
