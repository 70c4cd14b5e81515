/**
 * Issue "Agent: crash-safe order journal" — the crash-point matrix, the file change (and inside each durable write); its cases and
 * runner are in support/crash-matrix.ts.
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
 *
 * On SQLite every case; on PostgreSQL (issue 15) the representative ones (crash-matrix.ts `postgresCases`).
 * Cases run side by side (vitest's maxConcurrency, 5): each has its own host, agent and rollout on the
 * one coordinator, and stops only its own agents.
 */

import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, it } from 'vitest';
import { UNPRIVILEGED_ID } from '../packages/agent/test/support/deb-fixtures.js';
import { samplePatch, sha256Of } from '../scripts/lib/sample-specs.mjs';
import {
  CHECKPOINTS,
  type CrashHost,
  checkpointCase,
  FAILING_HEALTH,
  postgresCases,
  QUICK_HEALTH,
  REHEARSAL_CASES,
  runCrashCase,
  type Subject,
  titled,
  WRITE_CASES,
} from './support/crash-matrix.js';
import { FleetHarness, findNames } from './support/fleet-harness.js';
import { describeOnEachStore } from './support/store-variants.js';

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

describeOnEachStore('crash-point matrix: file change', [], (store) => {
  let work: string;
  let fleet: FleetHarness;
  let subject: Subject;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), `fleetpatch-crash-file-${store.kind}-`));
    fleet = await FleetHarness.start(join(work, 'coordinator'), {
      extraConfig: { ...(await store.coordinatorConfig()) },
    });
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

  afterAll(async () => {
    await fleet?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  if (store.kind === 'postgres') {
    it.concurrent.for(titled(postgresCases([...CHECKPOINTS.map(checkpointCase), ...WRITE_CASES]), 'state'))(
      '%s',
      async ([, crash], { expect }) => {
        await runCrashCase(fleet, subject, crash, work, expect);
      },
    );
    return;
  }

  it.concurrent.for(titled(CHECKPOINTS.map(checkpointCase), 'state'))('%s', async ([, crash], { expect }) => {
    await runCrashCase(fleet, subject, crash, work, expect);
  });

  it.concurrent.for(titled(WRITE_CASES, 'state'))('inside a write: %s', async ([, crash], { expect }) => {
    await runCrashCase(fleet, subject, crash, work, expect);
  });

  it.concurrent.for(titled(REHEARSAL_CASES, 'state'))('rehearsing its revert: %s', async ([, crash], { expect }) => {
    await runCrashCase(fleet, subject, crash, work, expect);
  });
});
