/**
 * The coordinator can die at any instruction (DESIGN.md, invariant 4) and a restart never
 * double-applies (invariant 1). A real coordinator and five real agents roll a file patch out in
 * waves [1, 2, "100%"]; the coordinator is SIGKILLed before a wave, mid-wave and during a bake, and
 * each time restarted on the same data dir and port. The rollout must still succeed, every host must
 * hold the new bytes, and the agents' own journals must show exactly one apply per host.
 */

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, HostRunState, RolloutStatus } from '@fleetpatch/shared';
import { APPLY_END_STATES } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor, waitForRolloutState } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness, readJournal } from './support/fleet-harness.js';

const CONFIG_PATH = '/etc/crash-app/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 4\n';
const HOSTS = ['web-1', 'web-2', 'web-3', 'web-4', 'web-5'];
const IN_FLIGHT: readonly HostRunState[] = ['dispatched', 'delivered', 'snapshotted', 'applying', 'verifying'];

describe('a coordinator killed at any point of a rollout', () => {
  let work = '';
  let fleet: FleetHarness;

  /** SIGKILL: no drain, no close; then a new process on the same data dir and port. */
  const crashAndRestart = (): Promise<void> => fleet.restart({ crash: true });

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-crash-'));
    fleet = await FleetHarness.start(join(work, 'coordinator'));
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
    await fleet.waitOnline(HOSTS);
  });

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
    }

    // The audit log agrees: each host was dispatched once, whatever the restarts.
    const { events } = await fleet.api.get<EventPage>(`/v1/rollouts/${rolloutId}/events?limit=1000`);
    const dispatched = events.filter((e) => e.type === 'host.dispatched').map((e) => e.hostId);
    expect(dispatched.sort()).toEqual([...HOSTS].sort());
    expect(fleet.coordinatorRuns).toHaveLength(4);
  });
});
