/**
 * D7: a SIGKILL of the agent alone does not kill the dpkg it runs. dpkg runs detached (its own
 * session, output and exit status in files in the order's directory), so it finishes on its own and
 * leaves the package installed cleanly (`ii`, never half-installed); the restarted agent waits for
 * any dpkg run still going, then recovers the order from the host as dpkg left it, and the
 * coordinator takes in exactly one result for it.
 *
 * A real coordinator and agent process, a throwaway dpkg root (unprivileged, under fakeroot); the new
 * version's postinst waits for the test's word, so the kill lands while dpkg is inside it.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  debTools,
  waitForReleaseScript,
} from '../packages/agent/test/support/deb-fixtures.js';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePackagePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { FINAL_APPLY_STATES, FleetHarness, hostOf, recordedResults } from './support/fleet-harness.js';
import { processRunning } from './support/process-running.js';
import { describeNeeding } from './support/requirements.js';

const HOST = 'dpkg-survives-1';

describeNeeding([debTools], 'dpkg outlives a killed agent', () => {
  let work: string;
  let bed: DebTestBed;
  let fleet: FleetHarness;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-dpkg-survives-'));
    [bed, fleet] = await Promise.all([
      createDebTestBed([
        { name: 'fpslow', version: '1.0', files: { '/usr/share/fpslow/VERSION': '1.0\n' } },
        {
          name: 'fpslow',
          version: '2.0',
          files: { '/usr/share/fpslow/VERSION': '2.0\n' },
          // It writes once released: through a pipe to a dead agent, that write alone would kill it.
          postinst: `${waitForReleaseScript('slow')}\necho 'fpslow 2.0 configured'`,
        },
      ]),
      FleetHarness.start(join(work, 'coordinator')),
    ]);
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await bed?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('SIGKILL of the agent mid-postinst: dpkg finishes on its own (ii), the restarted agent recovers and reports once', async () => {
    const root = await bed.newRoot(HOST);
    await root.install(bed.deb('fpslow', '1.0'));
    const dir = join(work, HOST);
    await mkdir(dir, { recursive: true });
    const configFile = join(dir, 'agent.json');
    await writeFile(configFile, JSON.stringify({ apt: { ...root.driverOptions, allowedPackages: ['fpslow'] } }));
    const spawn = { id: HOST, dataDir: join(dir, 'agent-data'), rootDir: root.root, configFile };
    const agent = fleet.spawnAgent({ ...spawn, joinToken: await fleet.register(HOST) });
    await fleet.waitOnline([HOST]);

    const patchId = await fleet.createPatch(
      samplePackagePatch({ title: 'fpslow 2.0', name: 'fpslow', version: '2.0' }),
    );
    const rolloutId = await fleet.startRollout(sampleRollout(patchId, { target: { hostIds: [HOST] }, maxFailures: 0 }));

    // dpkg is inside fpslow 2.0's postinst (which wrote dpkg's pid): kill the agent, and only the agent.
    const started = root.path('started-slow');
    await waitFor('the postinst to start', () => existsSync(started), { timeoutMs: 60_000 });
    const dpkgPid = Number((await readFile(started, 'utf8')).trim());
    await agent.kill();
    expect(processRunning(dpkgPid), 'dpkg survived the agent').toBe(true);
    expect(await root.query('fpslow')).not.toEqual({ status: 'ii', version: '2.0' });

    // Let the postinst finish: dpkg completes by itself, with no agent to read its output.
    await writeFile(root.path('release-slow'), '');
    await waitFor('dpkg to finish on its own', () => !processRunning(dpkgPid), { timeoutMs: 60_000 });
    expect(await root.query('fpslow')).toEqual({ status: 'ii', version: '2.0' });
    expect(await root.audit()).toBe('');

    // The restarted agent finds the run finished and recovers the order: back to its snapshot.
    const restarted = fleet.spawnAgent(spawn);
    const done = await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 60_000);
    const run = hostOf(done, HOST);
    expect(run, restarted.logs.join('\n')).toMatchObject({ state: 'failed', changed: false });
    expect(run).toMatchObject({ errorCode: 'interrupted' });
    expect(run.reason).toMatch(/^interrupted: the agent stopped .* at applying; reverted to the snapshot/);
    expect(await root.query('fpslow')).toEqual({ status: 'ii', version: '1.0' });
    expect(await root.audit()).toBe('');
    expect(restarted.logs.join('\n')).toMatch(/"exitCode":0,.*the dpkg run the previous agent started has ended/);
    // Exactly one result for the order reached the coordinator.
    expect(await recordedResults(fleet.api, rolloutId, HOST)).toEqual(['host.failed']);
  });
});
