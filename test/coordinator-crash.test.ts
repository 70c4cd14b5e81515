/**
 * The coordinator can die at any instruction (DESIGN.md, invariant 4) and a restart never
 * double-applies (invariant 1). A real coordinator and five real agents roll a file patch out in
 * waves [1, 2, "100%"]; the coordinator is SIGKILLed before a wave, mid-wave and during a bake, and
 * each time restarted on the same data dir and port. The rollout must still succeed, every host must
 * hold the new bytes, and the agents' own journals must show exactly one apply per host.
 *
 * Then the coordinator kills itself at its test crash points (FLEETPATCH_TEST_CRASH_AT): an apply
 * order committed but not sent, sent, and a result committed but not acknowledged. And a coordinator
 * restored from a backup sends an order its host has already run: the host answers from its journal.
 * At most once is checked where it happens: the journal counts how often each order id was started.
 *
 * All of it twice: on SQLite, and on PostgreSQL (issue 15: one coordinator on a database of its own,
 * restarted with the same config), where the backup is the README's `pg_dump`/`pg_restore`.
 */

import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, HostRunState, RolloutStatus } from '@fleetpatch/shared';
import { APPLY_END_STATES } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor, waitForRolloutState } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
import {
  FleetHarness,
  type JournalFileEntry,
  jsonLines,
  readJournal,
  recordedResults,
  settledJournal,
} from './support/fleet-harness.js';
import { storeBackup } from './support/store-backup.js';
import { describeOnEachStore, type StoreConfig } from './support/store-variants.js';

const CONFIG_PATH = '/etc/crash-app/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5'];
/** The coordinator's test crash points (engine-interfaces.ts `CoordinatorCrashPoint`). */
const CRASH_POINTS = ['order:committed', 'order:sent', 'result:committed'] as const;
const IN_FLIGHT: readonly HostRunState[] = ['dispatched', 'delivered', 'snapshotted', 'applying', 'verifying'];

describeOnEachStore('a coordinator killed at any point of a rollout', [], (store) => {
  let work = '';
  let fleet: FleetHarness;
  let storeConfig: StoreConfig;

  /** SIGKILL: no drain, no close; then a new process on the same data dir and port. */
  const crashAndRestart = (): Promise<void> => fleet.restart({ crash: true });

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), `fleetpatch-crash-${store.kind}-`));
    storeConfig = await store.coordinatorConfig();
    fleet = await FleetHarness.start(join(work, 'coordinator'), { extraConfig: { ...storeConfig } });
    for (const id of HOSTS) {
      const root = join(work, id, 'root');
      await mkdir(join(root, 'etc/crash-app'), { recursive: true });
      await writeFile(join(root, CONFIG_PATH), OLD, { mode: 0o644 });
      const token = await fleet.register(id, { role: 'web' });
      fleet.spawnAgent({
        id,
        joinToken: token,
        dataDir: join(work, id, 'data'),
        rootDir: root,
        labels: { role: 'web' },
      });
    }
    // Five first enrollments: generous on a loaded 2-core machine (one took 10 s there).
    await fleet.waitOnline(HOSTS, 60_000);
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('finishes the rollout after kills before a wave, mid-wave and during a bake, applying each host once', async () => {
    const patchId = await fleet.createPatch(
      samplePatch({
        path: CONFIG_PATH,
        content: NEW,
        expectedPriorSha256: sha256Of(OLD),
        // Half a second of watched health per host keeps each host in flight long enough to kill mid-wave.
        health: {
          checks: [{ kind: 'file', name: 'config present', path: CONFIG_PATH }],
          intervalSeconds: 0.1,
          minHealthySeconds: 0.5,
          healthyDeadlineSeconds: 20,
        },
      }),
    );
    const created = await fleet.api.post<RolloutStatus>(
      '/v1/rollouts',
      sampleRollout(patchId, {
        target: { labels: { role: 'web' } },
        waves: [1, 2, '100%'],
        maxParallel: 1,
        maxFailures: 0,
        bakeSeconds: 1,
        requiredApprovals: 0,
      }),
    );
    const rolloutId = created.rollout.id;
    const kills: string[] = [];

    // 1. Before a wave: the start is committed, the first order may or may not have gone out.
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    await crashAndRestart();
    kills.push('after start');

    // 2. Mid-wave: a host of the second wave has its order and is working on it.
    const midWave = await waitFor(
      'a host of wave 2 in flight',
      async () => {
        const s = await fleet.status(rolloutId);
        return s.waves[1]?.hosts.find((h) => IN_FLIGHT.includes(h.state));
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    await crashAndRestart();
    kills.push(`mid-wave (${midWave.hostId} ${midWave.state})`);

    // 3. During a bake: a later wave passed its gate and the rollout waits out bakeSeconds.
    const baking = await waitFor(
      'a wave baking',
      async () => {
        const s = await fleet.status(rolloutId);
        return s.rollout.state === 'running' ? s.waves.find((w) => w.wave >= 1 && w.phase === 'baking') : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 20 },
    );
    await crashAndRestart();
    kills.push(`baking wave ${baking.wave + 1}`);

    const final = await waitForRolloutState(fleet.api, rolloutId, APPLY_END_STATES, 60_000).catch((err: unknown) => {
      throw new Error(
        `${(err as Error).message}\n--- last coordinator log ---\n${fleet.coordinatorRuns.at(-1)?.join('\n')}`,
      );
    });
    expect(kills).toHaveLength(3);
    expect(final.rollout.state, final.rollout.stateReason ?? '').toBe('succeeded');
    expect(final.waves.flatMap((w) => w.hosts.map((h) => [h.hostId, h.state, h.changed]))).toEqual(
      HOSTS.map((id) => [id, 'healthy', true]),
    );

    // Every host holds exactly the new bytes.
    for (const id of HOSTS) {
      expect(await readFile(join(work, id, 'root', CONFIG_PATH), 'utf8'), id).toBe(NEW);
    }

    // The agents' journals prove exactly-once: one apply entry for this rollout per host, done, healthy.
    for (const id of HOSTS) {
      const applies = (await readJournal(join(work, id, 'data'))).filter(
        (e) => e.kind === 'apply' && e.order?.rolloutId === rolloutId,
      );
      expect(applies, `${id} journal`).toHaveLength(1);
      expect(applies[0]?.phase).toBe('done');
      expect(applies[0]?.result?.outcome).toBe('healthy');
      // Started once: a resend after a restart was answered from the journal, not run again.
      expect(applies[0]?.executions, `${id}: executions of ${applies[0]?.orderId}`).toBe(1);
    }

    // The audit log agrees: each host was dispatched once, whatever the restarts.
    const { events } = await fleet.api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`);
    const dispatched = events.filter((e) => e.type === 'host.dispatched').map((e) => e.hostId);
    expect(dispatched.sort()).toEqual([...HOSTS].sort());
    expect(fleet.coordinatorRuns).toHaveLength(4);
  });

  // ---- the coordinator's own crash points ------------------------------------------------------

  /**
   * Each case changes its own file, `/etc/crash-app/<name>.conf`, from `old` to `<name>` on `hostIds`;
   * its health (checked before and after) is that the file is there. Returns the patch id.
   */
  const patchOwnFile = async (name: string, hostIds: readonly string[]): Promise<string> => {
    const path = `/etc/crash-app/${name}.conf`;
    for (const id of hostIds) await writeFile(join(work, id, 'root', path), 'old\n', { mode: 0o644 });
    return fleet.createPatch(
      samplePatch({
        path,
        content: `${name}\n`,
        expectedPriorSha256: sha256Of('old\n'),
        health: {
          checks: [{ kind: 'file', path }],
          intervalSeconds: 0.1,
          minHealthySeconds: 0,
          healthyDeadlineSeconds: 20,
        },
      }),
    );
  };

  /**
   * Arms the coordinator at `point` (a restart with FLEETPATCH_TEST_CRASH_AT), once every agent has
   * nothing left to report: a result still pending from earlier would trip `result:committed` in
   * the hello, not in the case.
   */
  const armAt = async (point: string, hostIds: readonly string[]): Promise<void> => {
    // Nothing in flight anywhere before the restart; a host that has had no order yet is at rest too.
    for (const id of HOSTS) await settledJournal(join(work, id, 'data'), { emptyIsSettled: true });
    await fleet.restart({ env: { FLEETPATCH_TEST_CRASH_AT: point } });
    await fleet.waitOnline(hostIds);
  };

  /** This rollout's entries in a host's journal. */
  const entriesOf = async (hostId: string, rolloutId: string): Promise<JournalFileEntry[]> =>
    (await readJournal(join(work, hostId, 'data'))).filter(
      (e) => e.kind === 'apply' && e.order?.rolloutId === rolloutId,
    );

  /** Waits for the coordinator to SIGKILL itself at `point`, and checks that it was there and nowhere else. */
  const diesAt = async (point: string): Promise<void> => {
    const { child, logs } = fleet.coordinator;
    if (child.exitCode === null && child.signalCode === null) {
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the coordinator did not crash at ${point} within 30 s:\n${logs.join('\n')}`)),
          30_000,
        );
      });
      await Promise.race([once(child, 'exit'), deadline]).finally(() => clearTimeout(timer));
    }
    expect(child.signalCode, logs.join('\n')).toBe('SIGKILL');
    await waitFor('coordinator stdout closed', () => child.stdout?.readableEnded ?? true, { timeoutMs: 5_000 });
    const reached = jsonLines(logs).filter(
      (l) => typeof l.msg === 'string' && l.msg.includes('test crash point reached'),
    );
    expect(
      reached.map((l) => l.checkpoint),
      logs.join('\n'),
    ).toEqual([point]);
  };

  /**
   * After the restart the rollout finishes, each host holds the new file, its journal shows the order
   * started once and its result acknowledged, and the coordinator took in one result per host.
   */
  const expectFinishedOnce = async (rolloutId: string, name: string, hostIds: readonly string[]) => {
    const final = await waitForRolloutState(fleet.api, rolloutId, APPLY_END_STATES, 60_000);
    // The hosts' own record first: a second run of an order id shows here before anywhere else.
    for (const id of hostIds) {
      await settledJournal(join(work, id, 'data'));
      const entries = await entriesOf(id, rolloutId);
      expect(
        entries.map((e) => [e.orderId, e.executions]),
        `${id}: this rollout's orders and how often each was started`,
      ).toEqual([[hostOrder(final, id), 1]]);
      expect(entries[0]?.result?.outcome, `${id}: journaled result`).toBe('healthy');
      expect(await readFile(join(work, id, 'root', `etc/crash-app/${name}.conf`), 'utf8'), id).toBe(`${name}\n`);
      expect(await recordedResults(fleet.api, rolloutId, id), `${id}: results recorded`).toEqual(['host.healthy']);
    }
    expect(final.rollout.state, final.rollout.stateReason ?? '').toBe('succeeded');
    expect(final.waves.flatMap((w) => w.hosts.map((h) => [h.hostId, h.state, h.changed]))).toEqual(
      hostIds.map((id) => [id, 'healthy', true]),
    );
  };

  const hostOrder = (status: RolloutStatus, hostId: string) =>
    status.waves.flatMap((w) => w.hosts).find((h) => h.hostId === hostId)?.orderId;

  /** What the crash left, checked while the coordinator lies dead. */
  const atCrash: Record<(typeof CRASH_POINTS)[number], (rolloutId: string) => Promise<void>> = {
    // Committed, never sent: no host has heard of the rollout, and none can until a coordinator runs.
    'order:committed': async (rolloutId) => {
      expect(await entriesOf('web-1', rolloutId)).toEqual([]);
    },
    // Sent: web-1 runs it to the end on its own, its result unheard.
    'order:sent': async (rolloutId) => {
      const done = await waitFor('web-1 finishes the order it was sent', async () => {
        const [entry] = await entriesOf('web-1', rolloutId);
        return entry?.phase === 'done' ? entry : undefined;
      });
      expect(done).toMatchObject({ acked: false, executions: 1, result: { outcome: 'healthy' } });
    },
    // The result is committed and the coordinator died before the ack: web-1 still holds it unacknowledged.
    'result:committed': async (rolloutId) => {
      const [entry] = await entriesOf('web-1', rolloutId);
      expect(entry).toMatchObject({ phase: 'done', acked: false, result: { outcome: 'healthy' } });
    },
  };

  it.each(CRASH_POINTS)(
    'killed at %s, it resumes the rollout on restart; each host runs its order once and is recorded once',
    async (point) => {
      const name = point.replace(':', '-');
      const hostIds = ['web-1', 'web-2'];
      await armAt(point, hostIds);
      const rolloutId = await fleet.createRollout(
        sampleRollout(await patchOwnFile(name, hostIds), {
          target: { hostIds },
          waves: [1, 1],
          maxParallel: 1,
          maxFailures: 0,
          bakeSeconds: 0,
        }),
      );
      await fleet.api.post(`/v1/rollouts/${rolloutId}/start`).catch(() => undefined); // may die answering
      await diesAt(point);
      await atCrash[point](rolloutId);

      await fleet.restart();
      await expectFinishedOnce(rolloutId, name, hostIds);
    },
  );

  it('restored from a backup taken before a result was recorded, it sends that order again; the host answers from its journal', async () => {
    const name = 'restored-backup';
    const backup = storeBackup(join(work, 'coordinator'), storeConfig, join(work, 'coordinator-backup'));
    await armAt('order:committed', ['web-1']);
    const rolloutId = await fleet.createRollout(
      sampleRollout(await patchOwnFile(name, ['web-1']), {
        target: { hostIds: ['web-1'] },
        waves: [1],
        bakeSeconds: 0,
      }),
    );
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`).catch(() => undefined); // may die answering
    await diesAt('order:committed');
    // The backup: the database as it was, the order committed and not yet sent, taken while nothing runs.
    await backup.take();

    await fleet.restart();
    await expectFinishedOnce(rolloutId, name, ['web-1']);

    // Disaster: the coordinator's store is lost and the backup restored. It believes web-1 still has
    // the order in flight, and web-1's hello does not name it (acknowledged long ago): it sends it again.
    await fleet.coordinator.kill();
    await backup.restore();
    expect(await backup.hostRunStates(rolloutId)).toEqual(['dispatched']);
    // Succeeding again needs web-1's answer to the order sent again: its hello no longer names it.
    await fleet.restart();
    await expectFinishedOnce(rolloutId, name, ['web-1']);
  });
});
