/**
 * Issue "Agent: crash-safe order journal" — the crash-point matrix.
 *
 * For every checkpoint of the order executor, for a file change and for an apt package change: a
 * real coordinator and a real agent process that SIGKILLs itself at that checkpoint
 * (`FLEETPATCH_TEST_CRASH_AT`). The agent is restarted without the crash and the test proves that
 * the host is exactly at the old or the new state (never between), that this is what the
 * coordinator reports and what the agent's journal says, and that no temp files are left behind.
 *
 * For the file change, also at points inside each durable write (issue 11): the target file, the
 * snapshot copy, the restore and the journal entries, each after the temp file is written (before
 * its fsync), after the fsync (before the rename) and after the rename (before the directory fsync).
 * Every case also proves at most once: each order id was started once (the journal's `executions`),
 * the coordinator took in one result per order, and the journal ends with every result acknowledged.
 */

import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { HostRunState, RolloutState } from '@fleetpatch/shared';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debToolsAvailable,
  UNPRIVILEGED_ID,
} from '../packages/agent/test/support/deb-fixtures.js';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePackagePatch, samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
import {
  exitWithin,
  FINAL_APPLY_STATES,
  FINAL_REVERT_STATES,
  FleetHarness,
  findNames,
  hostOf,
  jsonLines,
  recordedResults,
  settledJournal,
} from './support/fleet-harness.js';

/**
 * The agent policy of a package host: apt may change fptest only (required since i10), and file
 * checks may look at what fptest ships under /usr/share/fptest besides the usual roots.
 */
const PACKAGE_AGENT_CONFIG = (apt: object) => ({
  apt: { ...apt, allowedPackages: ['fptest'] },
  health: { allowedFileRoots: ['/etc', '/opt', '/usr/local/etc', '/usr/share/fptest'] },
});

const CHECKPOINTS = [
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
const failed = (atCrash: HostState): Expectation => ({ atCrash, settled: 'old', hostRun: 'failed', rollout: 'halted' });
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
const RESENT_AND_APPLIED: Expectation = { atCrash: 'old', settled: 'new', hostRun: 'healthy', rollout: 'succeeded' };

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

function checkpointCase(checkpoint: Checkpoint): CrashCase {
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
 * Crash points inside the writes of a file change (the file driver's `file:<write>:<step>` and the
 * journal's `journal:<kind>:<phase>:<step>`). Before the rename the old file or entry is what a
 * restart finds; after it, the new one — so each write's last step usually ends elsewhere.
 */
const WRITE_CASES: readonly CrashCase[] = [
  ...eachStep('journal:apply:accepted', 'apply', (step) => (step === 'renamed' ? failed('old') : RESENT_AND_APPLIED)),
  ...eachStep('file:snapshot', 'apply', () => failed('old')),
  { point: 'journal:apply:snapshotted:temp-written', flow: 'apply', ...failed('old') },
  ...eachStep('journal:apply:applying', 'apply', () => failed('old')),
  ...eachStep('file:apply', 'apply', (step) => failed(step === 'renamed' ? 'new' : 'old')),
  { point: 'journal:apply:applied:temp-written', flow: 'apply', ...failed('new') },
  ...eachStep('journal:apply:done', 'apply', (step) => (step === 'renamed' ? APPLIED : failed('new'))),
  { point: 'journal:apply:acked:temp-written', flow: 'apply', ...APPLIED },
  // Health failed after apply, and the host is restoring its own snapshot.
  ...eachStep('file:restore', 'unhealthy', (step) => failed(step === 'renamed' ? 'old' : 'new')),
  // Before its rename the revert's first entry is lost: the coordinator sends the revert again.
  ...eachStep('journal:revert:reverting', 'revert', () => reverted('new')),
  ...eachStep('file:restore', 'revert', (step) => reverted(step === 'renamed' ? 'old' : 'new')),
  ...eachStep('journal:revert:done', 'revert', () => reverted('old')),
];

/**
 * Inside a rehearsal (rollout `rehearseRevert`): an agent killed while the rehearsal restores the
 * snapshot, or once it has, recovers like any interrupted apply — back to the snapshot, `failed` —
 * so the host ends at its prior state, never half-way nor at the change it may not have re-checked.
 */
const REHEARSAL_CASES: readonly CrashCase[] = [
  ...eachStep('file:restore', 'rehearse', (step) => failed(step === 'renamed' ? 'old' : 'new')),
  { point: 'apply:rehearsal-reverted', flow: 'rehearse', ...failed('old') },
];

/** One host under test: its root, and what it takes to judge its state. */
interface CrashHost {
  rootDir: string;
  configFile?: string;
  /** 'old' or 'new'; throws when the host is in neither (half-written, half-installed, audit not clean). */
  state(): Promise<HostState>;
  /** Temp files, staged .debs, dpkg journal leftovers: everything that should not outlive an order. */
  leftovers(): Promise<string[]>;
}

interface Subject {
  kind: 'file' | 'package';
  newHost(caseDir: string, label: string): Promise<CrashHost>;
  /** A patch whose health holds after apply. */
  healthyPatch: string;
  /** A patch whose health passes at baseline and fails after apply (the executor reverts itself). */
  unhealthyAfterApplyPatch: string;
}

const QUICK_HEALTH = { intervalSeconds: 0.1, minHealthySeconds: 0, healthyDeadlineSeconds: 10 } as const;
/** One second is the shortest deadline the schema allows: the revert starts about 1 s after apply. */
const FAILING_HEALTH = { intervalSeconds: 0.2, minHealthySeconds: 0, healthyDeadlineSeconds: 1 } as const;

/** Each case with its test title: `file:apply:renamed (apply) → old state, as reported`. */
function titled(cases: readonly CrashCase[], what: string): [string, CrashCase][] {
  return cases.map((crash) => [`${crash.point} (${crash.flow}) → ${crash.settled} ${what}, as reported`, crash]);
}

/** The host id of a case: what the agent enrolls as and the directory it works in. */
function caseId(kind: string, crash: CrashCase): string {
  return `${kind}-${crash.flow}-${crash.point.replace(/[^a-z]+/g, '-')}`;
}

async function runCrashCase(fleet: FleetHarness, subject: Subject, crash: CrashCase, work: string) {
  const { point, flow } = crash;
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
  const crashing = fleet.spawnAgent({ ...spawn, env: { FLEETPATCH_TEST_CRASH_AT: point } });
  await fleet.waitOnline([id]);

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
    const applied = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES);
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
  const settled = await fleet.waitForState(rolloutId, isRevert ? FINAL_REVERT_STATES : FINAL_APPLY_STATES);
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
  await fleet.stopAgents();
}

// ---- file changes ------------------------------------------------------------------------------

const FILE_PATH = '/etc/crashapp/app.conf';
const FILE_OLD = 'mode = old\nworkers = 2\n';
const FILE_NEW = 'mode = new\nworkers = 4\n# raised by the crash matrix\n';
const myUid = process.getuid?.() ?? 0;
const myGid = process.getgid?.() ?? 0;
/** Old and new differ in bytes, mode and (when we can chown) owner, so "neither" is detectable. */
const FILE_OLD_OWNER = myUid === 0 ? UNPRIVILEGED_ID : myUid;
const FILE_OLD_MODE = 0o600;
const FILE_NEW_MODE = 0o644;

async function newFileHost(caseDir: string): Promise<CrashHost> {
  const rootDir = join(caseDir, 'root');
  const target = join(rootDir, FILE_PATH);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, FILE_OLD);
  await chmod(target, FILE_OLD_MODE);
  if (myUid === 0) await chown(target, FILE_OLD_OWNER, FILE_OLD_OWNER);
  return {
    rootDir,
    async state() {
      const [info, bytes] = await Promise.all([lstat(target), readFile(target, 'utf8')]);
      const mode = info.mode & 0o7777;
      const seen = `${JSON.stringify(bytes)} mode ${mode.toString(8)} uid ${info.uid} gid ${info.gid}`;
      if (!info.isFile()) throw new Error(`${FILE_PATH} is not a regular file`);
      if (bytes === FILE_OLD && mode === FILE_OLD_MODE && info.uid === FILE_OLD_OWNER && info.gid === FILE_OLD_OWNER)
        return 'old';
      if (bytes === FILE_NEW && mode === FILE_NEW_MODE && info.uid === myUid && info.gid === myGid) return 'new';
      throw new Error(`${FILE_PATH} is neither the old nor the new file: ${seen}`);
    },
    async leftovers() {
      const beside = (await readdir(dirname(target))).filter((name) => name !== basename(target));
      return [...beside, ...(await findNames(rootDir, /fleetpatch-tmp/))];
    },
  };
}

describe('crash-point matrix: file change', () => {
  let work: string;
  let fleet: FleetHarness;
  let subject: Subject;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-crash-file-'));
    fleet = await FleetHarness.start(join(work, 'coordinator'));
    // Owned by this process's uid and gid, mode 0644: the builder's defaults.
    const change = { path: FILE_PATH, content: FILE_NEW, expectedPriorSha256: sha256Of(FILE_OLD) };
    subject = {
      kind: 'file',
      newHost: (caseDir) => newFileHost(caseDir),
      healthyPatch: await fleet.createPatch(
        samplePatch({
          title: 'crash matrix: file',
          ...change,
          health: { checks: [{ kind: 'file', path: FILE_PATH }], ...QUICK_HEALTH },
        }),
      ),
      unhealthyAfterApplyPatch: await fleet.createPatch(
        samplePatch({
          title: 'crash matrix: file, unhealthy after apply',
          ...change,
          health: {
            // Passes at baseline (old bytes), fails once the new bytes are in place.
            checks: [{ kind: 'file', name: 'still the old bytes', path: FILE_PATH, sha256: sha256Of(FILE_OLD) }],
            ...FAILING_HEALTH,
          },
        }),
      ),
    };
  });

  afterEach(async () => {
    await fleet?.stopAgents();
  });

  afterAll(async () => {
    await fleet?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it.each(titled(CHECKPOINTS.map(checkpointCase), 'state'))('%s', async (_title, crash) => {
    await runCrashCase(fleet, subject, crash, work);
  });

  it.each(titled(WRITE_CASES, 'state'))('inside a write: %s', async (_title, crash) => {
    await runCrashCase(fleet, subject, crash, work);
  });

  it.each(titled(REHEARSAL_CASES, 'state'))('rehearsing its revert: %s', async (_title, crash) => {
    await runCrashCase(fleet, subject, crash, work);
  });
});

// ---- package changes ---------------------------------------------------------------------------

const tools = debToolsAvailable();
if (!tools.available) console.warn(`crash-point matrix, package change: skipped — ${tools.reason}`);

async function newPackageHost(bed: DebTestBed, caseDir: string, label: string): Promise<CrashHost> {
  await mkdir(caseDir, { recursive: true });
  const root: DpkgRoot = await bed.newRoot(label);
  await root.install(bed.deb('fptest', '1.0'));
  const configFile = join(caseDir, 'agent.json');
  await writeFile(configFile, JSON.stringify(PACKAGE_AGENT_CONFIG(root.driverOptions)));
  const staging = root.driverOptions.stagingDir ?? root.path('var/cache/fleetpatch');
  return {
    rootDir: root.root,
    configFile,
    async state() {
      const [query, audit] = await Promise.all([root.query('fptest'), root.audit()]);
      if (audit !== '') throw new Error(`dpkg --audit is not clean:\n${audit}`);
      if (query?.status !== 'ii') throw new Error(`fptest is ${JSON.stringify(query)}, not installed cleanly`);
      const shipped = await readFile(root.path('usr/share/fptest/VERSION'), 'utf8');
      if (shipped !== `${query.version}\n`) throw new Error(`fptest ${query.version} ships VERSION ${shipped}`);
      if (query.version === '1.0') return 'old';
      if (query.version === '2.0') return 'new';
      throw new Error(`fptest is at ${query.version}, neither 1.0 nor 2.0`);
    },
    async leftovers() {
      const staged = (await readdir(staging)).filter((name) => name.endsWith('.deb'));
      const dpkgJournal = (await readdir(root.path('var/lib/dpkg/updates'))).filter((name) => /^\d+$/.test(name));
      const temps = await findNames(root.root, /fleetpatch-tmp|\.dpkg-(?:new|tmp)$/);
      return [...staged.map((n) => join(staging, n)), ...dpkgJournal.map((n) => `updates/${n}`), ...temps];
    },
  };
}

/**
 * A fresh dpkg root costs an `apt-get update` and a `dpkg --install`: the next case's root is
 * prepared while the current case runs, so the matrix mostly waits on one thing at a time.
 */
class HostPrefetcher {
  private readonly started = new Map<string, Promise<CrashHost>>();

  constructor(
    private readonly labels: readonly string[],
    private readonly make: (label: string) => Promise<CrashHost>,
  ) {}

  get(label: string): Promise<CrashHost> {
    const next = this.labels[this.labels.indexOf(label) + 1];
    const host = this.start(label);
    // Prefetch, not awaited here: start() keeps the promise (its rejection handled) for the case that needs it.
    if (next !== undefined) void this.start(next);
    return host;
  }

  /** Waits for every preparation begun, so nothing still writes into a directory being removed. */
  async settle(): Promise<void> {
    await Promise.allSettled(this.started.values());
  }

  private start(label: string): Promise<CrashHost> {
    let host = this.started.get(label);
    if (!host) {
      host = this.make(label);
      host.catch(() => {}); // reported by the case that awaits it
      this.started.set(label, host);
    }
    return host;
  }
}

describe.skipIf(!tools.available)(
  `crash-point matrix: package change${tools.available ? '' : ` (skipped: ${tools.reason})`}`,
  () => {
    let work: string;
    let bed: DebTestBed;
    let fleet: FleetHarness;
    let subject: Subject;
    let prefetch: HostPrefetcher | undefined;

    beforeAll(async () => {
      work = await mkdtemp(join(tmpdir(), 'fleetpatch-crash-pkg-'));
      [bed, fleet] = await Promise.all([createDebTestBed(), FleetHarness.start(join(work, 'coordinator'))]);
      const change = { name: 'fptest', version: '2.0', expectedPriorVersion: '1.0' };
      const shippedVersion = '/usr/share/fptest/VERSION';
      const hosts = new HostPrefetcher(
        CHECKPOINTS.map((checkpoint) => caseId('package', checkpointCase(checkpoint))),
        (label) => newPackageHost(bed, join(work, label), label),
      );
      prefetch = hosts;
      subject = {
        kind: 'package',
        newHost: (_caseDir, label) => hosts.get(label),
        healthyPatch: await fleet.createPatch(
          samplePackagePatch({
            title: 'crash matrix: package',
            ...change,
            health: { checks: [{ kind: 'file', path: shippedVersion }], ...QUICK_HEALTH },
          }),
        ),
        unhealthyAfterApplyPatch: await fleet.createPatch(
          samplePackagePatch({
            title: 'crash matrix: package, unhealthy after apply',
            ...change,
            health: {
              // Passes while 1.0 is installed, fails once 2.0 has replaced the file.
              checks: [{ kind: 'file', name: 'still 1.0', path: shippedVersion, sha256: sha256Of('1.0\n') }],
              ...FAILING_HEALTH,
            },
          }),
        ),
      };
    });

    afterEach(async () => {
      await fleet?.stopAgents();
    });

    afterAll(async () => {
      await fleet?.stop();
      await prefetch?.settle();
      await bed?.dispose();
      if (work) await rm(work, { recursive: true, force: true });
    });

    it.each(titled(CHECKPOINTS.map(checkpointCase), 'version'))('%s', async (_title, crash) => {
      await runCrashCase(fleet, subject, crash, work);
    });
  },
);
