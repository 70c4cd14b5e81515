/**
 * The crash-point matrix's cases and its runner, shared by the file and package halves
 * (test/agent-crash-recovery-file.test.ts, test/agent-crash-recovery-package.test.ts), which run as
 * two files so that they run side by side.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { HostRunState, RolloutState, RolloutStatus } from '@fleetpatch/shared';
import type { ExpectStatic } from 'vitest';
import { type AgentProcess, waitFor } from '../../scripts/lib/local-fleet.mjs';
import { sampleRollout } from '../../scripts/lib/sample-specs.mjs';
import {
  type AgentSpawn,
  exitWithin,
  FINAL_APPLY_STATES,
  FINAL_REVERT_STATES,
  type FleetHarness,
  findNames,
  hostOf,
  jsonLines,
  recordedResults,
  settledJournal,
} from './fleet-harness.js';

export const CHECKPOINTS = [
  'apply:accepted',
  'apply:snapshotted',
  'apply:applying',
  'apply:applied-before-journal',
  'apply:applied',
  'apply:verifying',
  'apply:reverting',
  'apply:done',
  'revert:reverting',
  'revert:restored',
  'revert:done',
] as const;
type Checkpoint = (typeof CHECKPOINTS)[number];
type HostState = 'old' | 'new';
/**
 * What the rollout asks of the host: apply a healthy patch, apply one that fails health, apply and
 * revert, or apply with a rehearsed revert (revert, compare, apply again within the order).
 */
type Flow = 'apply' | 'unhealthy' | 'revert' | 'rehearse';

interface Expectation {
  /** Where the host is while the agent lies dead at the crash point. */
  atCrash: HostState;
  /** Where the host is once the restarted agent has recovered and reported. */
  settled: HostState;
  hostRun: HostRunState;
  rollout: RolloutState;
}

/** One row of the matrix: where the agent dies, in which flow, and what must be true afterwards. */
interface CrashCase extends Expectation {
  point: string;
  flow: Flow;
}

/**
 * The recovery contract (orders/order-executor.ts `recover`): an apply interrupted before `done` is not
 * resumed; if it may have changed the host it goes back to its snapshot, and the coordinator hears
 * `failed, changed: false`. A finished order is only reported. An interrupted revert is finished.
 */
/** The apply is not resumed: the host is (or is put back) at the old state, the order failed. */
const failed = (atCrash: HostState): Expectation => ({
  atCrash,
  settled: 'old',
  hostRun: 'failed',
  rollout: 'halted',
});
/** A revert order is finished: the host ends at the old state. */
const reverted = (atCrash: HostState): Expectation => ({
  atCrash,
  settled: 'old',
  hostRun: 'reverted',
  rollout: 'reverted',
});
const APPLIED: Expectation = { atCrash: 'new', settled: 'new', hostRun: 'healthy', rollout: 'succeeded' };
/**
 * The first entry of the order never landed: the restarted agent has no record of it, its hello does
 * not name it, and the coordinator sends it again — its first run, since nothing had been done.
 */
const RESENT_AND_APPLIED: Expectation = {
  atCrash: 'old',
  settled: 'new',
  hostRun: 'healthy',
  rollout: 'succeeded',
};

function expectationFor(checkpoint: Checkpoint): Expectation {
  switch (checkpoint) {
    case 'apply:accepted':
    case 'apply:snapshotted':
    case 'apply:applying':
      return failed('old');
    case 'apply:applied-before-journal':
    case 'apply:applied':
    case 'apply:verifying':
    case 'apply:reverting':
      return failed('new');
    case 'apply:done':
      return APPLIED;
    case 'revert:reverting':
      return reverted('new');
    case 'revert:restored':
    case 'revert:done':
      return reverted('old');
  }
}

export function checkpointCase(checkpoint: Checkpoint): CrashCase {
  const flow: Flow = checkpoint.startsWith('revert:')
    ? 'revert'
    : checkpoint === 'apply:reverting'
      ? 'unhealthy'
      : 'apply';
  return { point: checkpoint, flow, ...expectationFor(checkpoint) };
}

/** The steps of one atomic write (fs/atomic-file.ts `AtomicWriteStep`), in order. */
const WRITE_STEPS = ['temp-written', 'temp-synced', 'renamed'] as const;
type WriteStep = (typeof WRITE_STEPS)[number];

/** One write at each of its steps; `outcome` says what the crash there leads to. */
function eachStep(write: string, flow: Flow, outcome: (step: WriteStep) => Expectation): CrashCase[] {
  return WRITE_STEPS.map((step) => ({ point: `${write}:${step}`, flow, ...outcome(step) }));
}

/**
 * The steps of a line appended to an order's entry file (fs/atomic-file.ts `AppendStep`): every
 * journal write after an order's first. A process killed after the append left its line in the
 * page cache, synced or not, so a restart reads the write as made at either step (a power cut
 * before the sync may lose it: the durability rules, test/durability-syscalls.test.ts, hold the
 * sync before the step it guards).
 */
const APPEND_STEPS = ['appended', 'synced'] as const;

/** One appended journal write at each of its steps: the crash there leads to `outcome`. */
function eachAppendStep(write: string, flow: Flow, outcome: Expectation): CrashCase[] {
  return APPEND_STEPS.map((step) => ({ point: `${write}:${step}`, flow, ...outcome }));
}

/**
 * Crash points inside the writes of a file change (the file driver's `file:<write>:<step>` and the
 * journal's `journal:<kind>:<phase>:<step>`). Before the rename the old file or entry is what a
 * restart finds; after it, the new one — so each write's last step usually ends elsewhere.
 */
export const WRITE_CASES: readonly CrashCase[] = [
  ...eachStep('journal:apply:accepted', 'apply', (step) => (step === 'renamed' ? failed('old') : RESENT_AND_APPLIED)),
  ...eachStep('file:snapshot', 'apply', () => failed('old')),
  // No `snapshotted` write: the snapshot is journaled with `applying` (apply-phases.ts says why).
  ...eachAppendStep('journal:apply:applying', 'apply', failed('old')),
  ...eachStep('file:apply', 'apply', (step) => failed(step === 'renamed' ? 'new' : 'old')),
  ...eachAppendStep('journal:apply:done', 'apply', APPLIED),
  // The ack is appended without a sync: its one step.
  { point: 'journal:apply:acked:appended', flow: 'apply', ...APPLIED },
  // Health failed after apply, and the host is restoring its own snapshot.
  ...eachStep('file:restore', 'unhealthy', (step) => failed(step === 'renamed' ? 'old' : 'new')),
  // Before its rename the revert's first entry is lost: the coordinator sends the revert again.
  ...eachStep('journal:revert:reverting', 'revert', () => reverted('new')),
  ...eachStep('file:restore', 'revert', (step) => reverted(step === 'renamed' ? 'old' : 'new')),
  ...eachAppendStep('journal:revert:done', 'revert', reverted('old')),
];

/**
 * Inside a rehearsal (rollout `rehearseRevert`): an agent killed while the rehearsal restores the
 * snapshot, or once it has, recovers like any interrupted apply — back to the snapshot, `failed` —
 * so the host ends at its prior state, never half-way nor at the change it may not have re-checked.
 */
export const REHEARSAL_CASES: readonly CrashCase[] = [
  ...eachStep('file:restore', 'rehearse', (step) => failed(step === 'renamed' ? 'old' : 'new')),
  { point: 'apply:rehearsal-reverted', flow: 'rehearse', ...failed('old') },
];

/**
 * The cases run again with the coordinator on PostgreSQL (issue 15). The agent's recovery is the same
 * whatever the store; what differs is the coordinator's side, so one case for each way a restarted
 * agent's hello meets it: a finished result reported again (`apply:done`), a failure its recovery
 * found (`apply:applied`), an order sent again because its first journal entry never landed
 * (`journal:apply:accepted:temp-written`), a revert finished on restart (`revert:reverting`) and one
 * sent again (`journal:revert:reverting:temp-written`).
 */
const ON_POSTGRES: readonly string[] = [
  'apply:done (apply)',
  'apply:applied (apply)',
  'journal:apply:accepted:temp-written (apply)',
  'revert:reverting (revert)',
  'journal:revert:reverting:temp-written (revert)',
];

/** The cases of `cases` run on PostgreSQL too (see ON_POSTGRES). */
export function postgresCases(cases: readonly CrashCase[]): CrashCase[] {
  return cases.filter((crash) => ON_POSTGRES.includes(`${crash.point} (${crash.flow})`));
}

/** One host under test: its root, and what it takes to judge its state. */
export interface CrashHost {
  rootDir: string;
  configFile?: string;
  /** 'old' or 'new'; throws when the host is in neither (half-written, half-installed, audit not clean). */
  state(): Promise<HostState>;
  /** Temp files, staged .debs, dpkg journal leftovers: everything that should not outlive an order. */
  leftovers(): Promise<string[]>;
}

export interface Subject {
  kind: 'file' | 'package';
  newHost(caseDir: string, label: string): Promise<CrashHost>;
  /** A patch whose health holds after apply. */
  healthyPatch: string;
  /** A patch whose health passes at baseline and fails after apply (the executor reverts itself). */
  unhealthyAfterApplyPatch: string;
}

export const QUICK_HEALTH = { intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 } as const;
/** One second is the shortest deadline the schema allows: the revert starts about 1 s after apply. */
export const FAILING_HEALTH = { intervalSeconds: 0.2, minHealthySeconds: 0, healthyDeadlineSeconds: 1 } as const;

/** Each case with its test title: `file:apply:renamed (apply) → old state, as reported`. */
export function titled(cases: readonly CrashCase[], what: string): [string, CrashCase][] {
  return cases.map((crash) => [`${crash.point} (${crash.flow}) → ${crash.settled} ${what}, as reported`, crash]);
}

/** The host id of a case: what the agent enrolls as and the directory it works in. */
export function caseId(kind: string, crash: CrashCase): string {
  return `${kind}-${crash.flow}-${crash.point.replace(/[^a-z]+/g, '-')}`;
}

/**
 * One case of the matrix. `expect` is the case's own (its test context's): cases run side by side, and
 * only a context's `expect` counts its assertions toward that case.
 */
export async function runCrashCase(
  fleet: FleetHarness,
  subject: Subject,
  crash: CrashCase,
  work: string,
  expect: ExpectStatic,
) {
  const id = caseId(subject.kind, crash);
  const caseDir = join(work, id);
  await mkdir(caseDir, { recursive: true });
  const host = await subject.newHost(caseDir, id);
  expect(await host.state()).toBe('old');

  const token = await fleet.register(id);
  const spawn = {
    id,
    joinToken: token,
    dataDir: join(caseDir, 'agent-data'),
    rootDir: host.rootDir,
    ...(host.configFile ? { configFile: host.configFile } : {}),
  };
  // Only this case's agents are stopped at its end: cases run side by side on one coordinator.
  const agents: AgentProcess[] = [];
  try {
    await crashAndRecover(fleet, subject, crash, id, host, spawn, agents, expect);
  } finally {
    await Promise.all(agents.map((agent) => fleet.stopAgent(agent)));
  }
}

/**
 * Waits for the rollout to settle. Cases run side by side, each a real agent with real dpkg, so a loaded
 * machine gets a minute; a timeout says where the rollout stood and what the agent logged.
 */
async function settle(
  fleet: FleetHarness,
  rolloutId: string,
  states: readonly RolloutState[],
  agent: AgentProcess,
): Promise<RolloutStatus> {
  try {
    return await fleet.waitForState(rolloutId, states, 60_000);
  } catch (err) {
    throw new Error(`${(err as Error).message}\nthe agent logged:\n${agent.logs.join('\n')}`);
  }
}

async function crashAndRecover(
  fleet: FleetHarness,
  subject: Subject,
  crash: CrashCase,
  id: string,
  host: CrashHost,
  spawn: AgentSpawn,
  agents: AgentProcess[],
  expect: ExpectStatic,
) {
  const { point, flow } = crash;
  const crashing = fleet.spawnAgent({ ...spawn, env: { FLEETPATCH_TEST_CRASH_AT: point } });
  agents.push(crashing);
  // A minute, as `settle` gives: cases run side by side, each starting a real agent, under CI's load.
  await fleet.waitOnline([id], 60_000);

  const patchId = flow === 'unhealthy' ? subject.unhealthyAfterApplyPatch : subject.healthyPatch;
  const rolloutId = await fleet.startRollout(
    sampleRollout(patchId, {
      target: { hostIds: [id] },
      waves: [1],
      maxFailures: 0,
      bakeSeconds: 0,
      // The host restores its own snapshot when health fails after apply (the unhealthy flow).
      autoRevert: 'host',
      rehearseRevert: flow === 'rehearse',
    }),
  );
  const isRevert = flow === 'revert';
  if (isRevert) {
    const applied = await settle(fleet, rolloutId, FINAL_APPLY_STATES, crashing);
    expect(applied.rollout.state, applied.rollout.stateReason ?? '').toBe('succeeded');
    expect(await host.state()).toBe('new');
    await fleet.api.post(`/v1/rollouts/${rolloutId}/revert`);
  }

  // The agent must die by its own SIGKILL, at exactly this point and nowhere else.
  const exit = await exitWithin(crashing, 30_000, `crash at ${point}`);
  expect(exit, crashing.logs.join('\n')).toEqual({ code: null, signal: 'SIGKILL' });
  // 'exit' can come before the pipe is drained: wait for the stdout stream to end.
  await waitFor('agent stdout closed', () => crashing.child.stdout?.readableEnded ?? true, { timeoutMs: 5_000 });
  const crashes = jsonLines(crashing.logs).filter(
    (line) => typeof line.msg === 'string' && line.msg.includes('test crash point reached'),
  );
  expect(
    crashes.map((line) => line.checkpoint),
    crashing.logs.join('\n'),
  ).toEqual([point]);
  expect(await host.state(), 'host state while the agent is dead').toBe(crash.atCrash);

  // Restart without the crash point: recovery runs before the agent dials in and reports.
  const restarted = fleet.spawnAgent(spawn);
  agents.push(restarted);
  const settled = await settle(fleet, rolloutId, isRevert ? FINAL_REVERT_STATES : FINAL_APPLY_STATES, restarted);
  const run = hostOf(settled, id);
  const context = `${point}: rollout ${settled.rollout.state} (${settled.rollout.stateReason}); host ${run.state} (${run.reason})\n${restarted.logs.join('\n')}`;

  const finalState = await host.state();
  expect(finalState, context).toBe(crash.settled);
  expect(settled.rollout.state, context).toBe(crash.rollout);
  expect(run.state, context).toBe(crash.hostRun);
  // A failure here is the interrupted order's, found by recovery, not some unrelated refusal.
  if (crash.hostRun === 'failed') {
    expect(run.errorCode, context).toBe('interrupted');
    expect(run.reason, context).toMatch(/^interrupted: the agent stopped \(crash, kill or power loss\) at \w+/);
  }
  // The coordinator's view is the host's truth: it says "changed" exactly when the change is there.
  expect(run.changed, context).toBe(finalState === 'new');

  // The agent's journal agrees: every result reported and acknowledged, one entry per order, and
  // each order id started exactly once (at most once per host, and a resend after a lost first
  // entry was the only run).
  const journal = await settledJournal(spawn.dataDir);
  expect(
    journal.map((entry) => [entry.orderId, entry.executions]),
    'journal: executions per order id',
  ).toEqual(journal.map((entry) => [entry.orderId, 1]));
  const applies = journal.filter((entry) => entry.kind === 'apply');
  expect(applies.map((entry) => entry.orderId)).toEqual([run.orderId]);
  const apply = applies[0];
  expect(apply?.changed, 'journal: apply entry changed').toBe(finalState === 'new');
  const reverts = journal.filter((entry) => entry.kind === 'revert');
  if (isRevert) {
    expect(reverts).toHaveLength(1);
    expect(reverts[0]).toMatchObject({ revertsOrderId: run.orderId, result: { outcome: 'reverted' } });
  } else {
    expect(reverts).toHaveLength(0);
    expect(apply?.result?.changed).toBe(run.changed);
  }
  // The coordinator took in each order's result once: a re-report after the restart changed nothing.
  expect(await recordedResults(fleet.api, rolloutId, id), context).toEqual(
    isRevert ? ['host.healthy', 'host.reverted'] : [`host.${crash.hostRun}`],
  );

  expect(await host.leftovers(), 'temp files left behind').toEqual([]);
  // Nothing of an interrupted write is left in the agent's data dir either: no temp file, and no
  // snapshot copy that the journal never recorded (it could never be used nor pruned by reading it).
  expect(await findNames(spawn.dataDir, /fleetpatch-tmp/), 'temp files in the data dir').toEqual([]);
  const unrecorded = journal.filter(
    (e) => e.snapshot === undefined && existsSync(join(spawn.dataDir, 'orders', e.orderId, 'snapshot')),
  );
  expect(
    unrecorded.map((e) => e.orderId),
    'snapshot dirs the journal never recorded',
  ).toEqual([]);
}

// ---- file changes ------------------------------------------------------------------------------
