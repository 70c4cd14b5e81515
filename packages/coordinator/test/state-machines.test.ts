/**
 * Both state machines, stated here on their own with the reason for every edge, and held against
 * the tables the engine checks every write with: an edge added, dropped or moved in
 * `ROLLOUT_TRANSITIONS` or `HOST_RUN_TRANSITIONS` fails here until this specification says why.
 * Then what the tables promise as a whole (progress only forward, every state reachable, every run
 * able to end), and what a refused move says.
 */
import { ErrorCode, FleetError, HOST_RUN_STATES, type HostRunState, ROLLOUT_STATES } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import {
  canTransitionHostRun,
  HOST_PHASE_ORDER,
  HOST_RUN_TRANSITIONS,
  IN_FLIGHT_HOST_STATES,
  reportedChange,
  TERMINAL_HOST_STATES,
} from '../src/engine/host-run-states.js';
import { IllegalHostTransitionError } from '../src/engine/host-run-transition.js';
import {
  assertTransition,
  assertVerb,
  canTransition,
  ROLLOUT_TRANSITIONS,
  VERB_TRANSITIONS,
} from '../src/engine/rollout-states.js';
import { SYSTEM, WINDOW_PAUSE_REASON } from '../src/engine/rollout-transition.js';

const ROLLOUT_EDGES = [
  'draft → awaiting_approval', // submit
  'draft → scheduled', // submit, when no approval is required
  'draft → aborted',
  'awaiting_approval → scheduled', // the last approval needed
  'awaiting_approval → aborted',
  'scheduled → running', // start, or startAt
  'scheduled → aborted',
  'running → paused', // a person, or the window's cutoff
  'running → succeeded', // the last wave passed its bake
  'running → halted', // the failure budget is exceeded
  'running → aborted',
  'running → reverting',
  'paused → running', // resume, or the window opens again
  'paused → halted', // a host still in flight fails past the budget
  'paused → aborted',
  'paused → reverting',
  'succeeded → reverting',
  'halted → running', // retry
  'halted → aborted',
  'halted → reverting',
  'aborted → running', // retry
  'aborted → reverting',
  'reverting → reverted',
  'reverting → revert_failed',
  'reverted → reverting', // a late result shows a host still carries the change
  'revert_failed → reverting', // a person reverts again
];

const APPLY_ENDS = ['healthy', 'failed', 'skipped', 'cancelled', 'revert_failed', 'timed_out'];
const HOST_EDGES = [
  'queued → dispatched',
  'queued → failed', // offline policy fail, at dispatch
  'queued → skipped', // offline policy skip, at dispatch
  ...['delivered', 'snapshotted', 'applying', 'verifying'].map((to) => `dispatched → ${to}`),
  'dispatched → queued', // an order still waiting for its host when the maintenance window closes
  ...['snapshotted', 'applying', 'verifying'].map((to) => `delivered → ${to}`),
  ...['applying', 'verifying'].map((to) => `snapshotted → ${to}`),
  'applying → verifying',
  // Any phase in flight may end in a result, or time out.
  ...['dispatched', 'delivered', 'snapshotted', 'applying', 'verifying'].flatMap((from) =>
    APPLY_ENDS.map((to) => `${from} → ${to}`),
  ),
  'healthy → failed', // the bake watch saw health fail; the host reverted itself
  'healthy → revert_failed', // … and could not
  'healthy → reverting',
  // A retry requeues these; any of them may still carry the change and be reverted.
  ...['failed', 'timed_out', 'skipped', 'cancelled'].flatMap((from) => [`${from} → queued`, `${from} → reverting`]),
  'reverting → reverted',
  'reverting → revert_failed',
  'reverted → reverting', // a late apply result: the host changed after all
  'revert_failed → reverted', // a revert given up on reports success after all
  'revert_failed → reverting', // a person tries again
  // A source change none of whose binaries the host has: an answer from any phase in flight, not a
  // failure; a retry may ask again (the host may have gained one), and there is nothing to revert.
  ...['dispatched', 'delivered', 'snapshotted', 'applying', 'verifying'].map((from) => `${from} → not_applicable`),
  'not_applicable → queued',
];

function edges(table: Readonly<Record<string, readonly string[]>>): string[] {
  return Object.entries(table).flatMap(([from, targets]) => targets.map((to) => `${from} → ${to}`));
}

/** States reachable from `start` along the table's edges. */
function reachable(table: Readonly<Record<string, readonly string[]>>, start: string): Set<string> {
  const seen = new Set([start]);
  for (const state of seen) for (const next of table[state] ?? []) seen.add(next);
  return seen;
}

describe('the rollout state machine', () => {
  it('has exactly the specified edges, from every state', () => {
    expect(edges(ROLLOUT_TRANSITIONS).sort()).toEqual([...ROLLOUT_EDGES].sort());
    expect(Object.keys(ROLLOUT_TRANSITIONS).sort()).toEqual([...ROLLOUT_STATES].sort());
  });

  it('lets every verb take only edges of the table', () => {
    for (const [verb, { from, to }] of Object.entries(VERB_TRANSITIONS)) {
      for (const state of from) expect(canTransition(state, to), `${verb}: ${state} → ${to}`).toBe(true);
    }
  });

  it('reaches every state from draft, and an end of the revert from every state', () => {
    expect([...reachable(ROLLOUT_TRANSITIONS, 'draft')].sort()).toEqual([...ROLLOUT_STATES].sort());
    for (const state of ROLLOUT_STATES) expect(reachable(ROLLOUT_TRANSITIONS, state).has('reverted'), state).toBe(true);
  });

  it('refuses an edge it does not have with illegal_transition, the state and what was wanted', () => {
    expect(() => assertTransition('ro_1', 'succeeded', 'running', 'retry')).toThrow(
      expect.objectContaining({
        code: ErrorCode.illegalTransition,
        message: 'cannot retry a rollout that is succeeded',
        details: { rolloutId: 'ro_1', state: 'succeeded', wanted: 'running' },
      }),
    );
    expect(() => assertTransition('ro_1', 'running', 'paused', 'pause')).not.toThrow();
  });

  it('refuses a verb from a state it does not act on, saying where it may act', () => {
    expect(() => assertVerb('ro_1', 'succeeded', 'abort')).toThrow(
      expect.objectContaining({
        code: ErrorCode.illegalTransition,
        message: 'cannot abort a rollout that is succeeded',
        details: {
          rolloutId: 'ro_1',
          state: 'succeeded',
          allowedFrom: ['draft', 'awaiting_approval', 'scheduled', 'running', 'paused', 'halted'],
        },
      }),
    );
    expect(() => assertVerb('ro_1', 'paused', 'resume')).not.toThrow();
  });

  it('records what the engine does by itself as the system, and a window pause by its reason', () => {
    expect(SYSTEM).toBe('system');
    expect(WINDOW_PAUSE_REASON).toBe('maintenance window closed');
  });
});

describe('the host-run state machine', () => {
  it('has exactly the specified edges, from every state', () => {
    expect(edges(HOST_RUN_TRANSITIONS).sort()).toEqual([...HOST_EDGES].sort());
    expect(Object.keys(HOST_RUN_TRANSITIONS).sort()).toEqual([...HOST_RUN_STATES].sort());
  });

  it('names the phases in flight, in their order, and the states a run rests in', () => {
    expect(IN_FLIGHT_HOST_STATES).toEqual(['dispatched', 'delivered', 'snapshotted', 'applying', 'verifying']);
    expect(HOST_PHASE_ORDER).toEqual({
      queued: 0,
      dispatched: 1,
      delivered: 2,
      snapshotted: 3,
      applying: 4,
      verifying: 5,
    });
    expect([...TERMINAL_HOST_STATES].sort()).toEqual(
      ['cancelled', 'failed', 'healthy', 'not_applicable', 'revert_failed', 'reverted', 'skipped', 'timed_out'].sort(),
    );
  });

  it('moves a run in flight only forward, but for an undelivered order back to the queue', () => {
    for (const from of IN_FLIGHT_HOST_STATES) {
      for (const to of HOST_RUN_TRANSITIONS[from]) {
        if (from === 'dispatched' && to === 'queued') continue;
        const next = HOST_PHASE_ORDER[to];
        if (next !== undefined) expect(next, `${from} → ${to}`).toBeGreaterThan(HOST_PHASE_ORDER[from] as number);
      }
    }
  });

  it('lets every state in flight come to rest, and reaches every state from queued', () => {
    for (const state of HOST_RUN_STATES) {
      const ends = [...reachable(HOST_RUN_TRANSITIONS, state)].filter((s) =>
        TERMINAL_HOST_STATES.has(s as HostRunState),
      );
      expect(ends.length, state).toBeGreaterThan(0);
    }
    expect([...reachable(HOST_RUN_TRANSITIONS, 'queued')].sort()).toEqual([...HOST_RUN_STATES].sort());
  });

  it('never lets a run go back into flight except through the queue', () => {
    for (const from of HOST_RUN_STATES) {
      if (IN_FLIGHT_HOST_STATES.includes(from) || from === 'queued') continue;
      for (const to of IN_FLIGHT_HOST_STATES) expect(canTransitionHostRun(from, to), `${from} → ${to}`).toBe(false);
    }
  });

  it('a refused move is a bug of the engine, named for what it is: not a FleetError a caller could be blamed for', () => {
    const err = new IllegalHostTransitionError(
      { rolloutId: 'ro_1', hostId: 'h-1' },
      'queued',
      'healthy',
      'is not in HOST_RUN_TRANSITIONS',
    );
    expect(err).not.toBeInstanceOf(FleetError);
    expect(err.name).toBe('IllegalHostTransitionError');
    expect(err.message).toBe('host run h-1 of ro_1: queued → healthy is not in HOST_RUN_TRANSITIONS');
  });
});

describe('what the views say a host carries', () => {
  const timedOutSilent = { state: 'timed_out', answered: false, orderId: 'order-1', changed: false } as const;

  it('is unknown only for a host timed out with an order out that never answered', () => {
    expect(reportedChange(timedOutSilent)).toBe('unknown');
  });

  it('is what the agent reported once it answered, when no order is out, or in any other state', () => {
    expect(reportedChange({ ...timedOutSilent, answered: true })).toBe(false);
    expect(reportedChange({ ...timedOutSilent, answered: true, changed: true })).toBe(true);
    expect(reportedChange({ ...timedOutSilent, orderId: null })).toBe(false);
    expect(reportedChange({ ...timedOutSilent, state: 'failed' })).toBe(false);
    expect(reportedChange({ ...timedOutSilent, state: 'healthy', changed: true })).toBe(true);
  });
});
