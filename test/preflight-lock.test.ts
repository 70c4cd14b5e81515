/**
 * D2, end to end: a dry run while another dpkg holds the host's lock. The agent's own lock timeout
 * is the production default (60 s), far beyond the 6 s the CLI waits; the coordinator tells the agent
 * how long it waits, so the agent answers `blocked`, naming the holder, and `fleetpatch rollout
 * preflight` exits 3 — not `no_answer`.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debTools,
  readIfExists,
  waitFor,
} from '../packages/agent/test/support/deb-fixtures.js';
import { samplePackagePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FleetHarness } from './support/fleet-harness.js';
import { describeNeeding } from './support/requirements.js';

describeNeeding([debTools], 'a dry run on a host whose dpkg lock is held', () => {
  let work: string;
  let bed: DebTestBed;
  let fleet: FleetHarness;
  let host: DpkgRoot;

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-preflight-lock-'));
    [bed, fleet] = await Promise.all([createDebTestBed(), FleetHarness.start(join(work, 'coordinator'))]);
    host = await bed.newRoot('lock-1');
    await host.install(bed.deb('fptest', '1.0'));
    const dir = join(work, 'lock-1');
    await mkdir(dir, { recursive: true });
    const configFile = join(dir, 'agent.json');
    // The agent's lock timeout as shipped (60 s), not the test roots' 1 s.
    const apt = { ...host.driverOptions, lockTimeoutMs: 60_000, allowedPackages: ['fptest'] };
    await writeFile(configFile, JSON.stringify({ apt }));
    fleet.spawnAgent({
      id: 'lock-1',
      joinToken: await fleet.register('lock-1', { app: 'lock' }),
      dataDir: join(dir, 'agent-data'),
      rootDir: host.root,
      configFile,
      labels: { app: 'lock' },
    });
    await fleet.waitOnline(['lock-1']);
  }, 120_000);

  afterAll(async () => {
    await fleet?.stop();
    await bed?.dispose();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('answers blocked with the holder before the CLI gives up, and the CLI exits 3', async () => {
    const patchId = await fleet.createPatch(
      samplePackagePatch({ title: 'fptest 2.0', name: 'fptest', version: '2.0' }),
    );
    const rolloutId = await fleet.createRollout(
      sampleRollout(patchId, { target: { hostIds: ['lock-1'] }, draft: true }),
    );
    const holder = host.startInstall(bed.deb('fplock', '1.0'));
    const exited = new Promise<number | null>((resolve) => holder.once('exit', resolve));
    try {
      await waitFor(() => readIfExists(host.path('started-fplock')), 'fplock preinst to hold the lock');
      const started = Date.now();
      const dry = await runCli(fleet.coordinator.url, ['rollout', 'preflight', rolloutId, '--timeout', '6'], {
        token: ADMIN_TOKEN,
      });
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(dry.code, dry.stderr).toBe(3);
      expect(dry.stdout).toMatch(/: 1 blocked\n/);
      expect(dry.stdout).toMatch(/lock-1 +blocked +dpkg lock not free within 3000 ms: .*held by process \d+ \(dpkg\)/);
    } finally {
      await host.writeFile('release-fplock', '');
    }
    expect(await exited).toBe(0);
  });
});
