/**
 * A result the coordinator's store refused, and dropped unacknowledged, reaches it without a reconnect.
 *
 * Before, the coordinator dropped such a report after three tries and waited for the agent's next
 * hello to carry it again; a connected agent never sent one, so its host run met its deadline while
 * the result sat in the agent's journal. Here a real coordinator process and a real agent process roll
 * a file out; a trigger in the coordinator's SQLite store refuses the host's healthy result until the
 * test drops it. The agent, still on its first connection, sends its result again by itself, and the
 * rollout succeeds.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RolloutStatus } from '@fleetpatch/shared';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness, hostOf, jsonLines, readFileOrNull } from './support/fleet-harness.js';

const CONFIG_PATH = '/etc/redelivery/app.conf';
const OLD = 'retries = 1\n';
const NEW = 'retries = 3\n';

let work = '';
let fleet: FleetHarness;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-redelivery-'));
  fleet = await FleetHarness.start(join(work, 'coordinator'));
  const root = join(work, 'web-1', 'root');
  await mkdir(join(root, 'etc/redelivery'), { recursive: true });
  await writeFile(join(root, CONFIG_PATH), OLD, { mode: 0o644 });
  fleet.spawnAgent({
    id: 'web-1',
    joinToken: await fleet.register('web-1', { role: 'web' }),
    dataDir: join(work, 'web-1', 'data'),
    rootDir: root,
    labels: { role: 'web' },
    // A second (the coordinator's heartbeat here is 1 s) instead of the default 30 s: the test's pace.
    env: { FLEETPATCH_RESULT_RESEND_MS: '1000' },
  });
  await fleet.waitOnline(['web-1'], 60_000);
}, 120_000);

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

it('sends the result again on the same connection once the coordinator dropped it, and the rollout succeeds', async () => {
  // The coordinator's store refuses to record web-1 healthy, as a constraint would; the test's own
  // connection to the same SQLite file (WAL: both may use it) makes and later drops the trigger.
  const db = new Database(join(work, 'coordinator', 'fleetpatch.db'));
  try {
    db.exec(`CREATE TRIGGER refuse_healthy BEFORE UPDATE ON host_runs
      WHEN NEW.host_id = 'web-1' AND NEW.state = 'healthy'
      BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;`);
    const patchId = await fleet.createPatch(
      samplePatch({ path: CONFIG_PATH, content: NEW, expectedPriorSha256: sha256Of(OLD) }),
    );
    const rolloutId = await fleet.startRollout(
      sampleRollout(patchId, {
        target: { labels: { role: 'web' } },
        waves: ['100%'],
        maxFailures: 0,
        bakeSeconds: 0,
        requiredApprovals: 0,
        // Long enough that only the agent's own re-send, not a deadline, can end the host run.
        hostTimeoutSeconds: 600,
      }),
    );

    // Refused three times, then dropped unacknowledged; the host run still waits for its result.
    await waitFor(
      'the coordinator to drop the refused result',
      async () =>
        jsonLines(fleet.coordinator.logs).some((l) => /the store refused an agent report again/.test(String(l.msg)))
          ? true
          : undefined,
      { timeoutMs: 30_000, intervalMs: 50 },
    );
    expect(hostOf(await fleet.status(rolloutId), 'web-1').state).toBe('dispatched');

    // The cause mended: the agent's next try is recorded and acknowledged, no reconnect needed.
    db.exec('DROP TRIGGER refuse_healthy');
    const done = await fleet.waitForState(rolloutId, ['succeeded', 'halted', 'aborted'], 30_000);
    expect(done.rollout.state).toBe('succeeded');
    expect(hostOf(done as RolloutStatus, 'web-1').state).toBe('healthy');
    expect(await readFileOrNull(join(work, 'web-1', 'root', CONFIG_PATH))).toBe(NEW);

    const agentLog = jsonLines(fleet.agentLogs());
    expect(agentLog.filter((l) => l.msg === 'connected to coordinator')).toHaveLength(1);
    expect(
      agentLog.filter((l) => /has not acknowledged this result; sending it again/.test(String(l.msg))).length,
    ).toBeGreaterThanOrEqual(1);
  } finally {
    db.close();
  }
}, 90_000);
