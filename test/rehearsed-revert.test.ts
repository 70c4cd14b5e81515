import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventPage, HealthPolicy } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FleetHarness, hostOf, sampleFilePatch } from './support/fleet-harness.js';

// The canary rehearses its revert: it applies, passes health, reverts, is checked to be exactly at
// its prior state (bytes, mode, owner) and healthy, then applies again and the rollout carries on.
// A revert that does not restore the prior state halts the rollout before any other host changes.
// The health check is a real HTTP service in this process; in the second test it plays a service
// that, seeing its old config again, rewrites its mode: the kind of drift a revert cannot undo.

const CONF = '/etc/app/app.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 8\n';
const HOSTS = ['web-1', 'web-2', 'web-3'];

let work: string;
let fleet: FleetHarness;
let service: Server;
/** What the canary's file held at each health check, in order. */
let canarySeen: string[] = [];
/** When set, the service chmods the canary's file to this mode once it sees the old content come back. */
let driftModeOnRevert: number | undefined;

const rootOf = (host: string) => join(work, host, 'root');
const confPath = (host: string) => join(rootOf(host), CONF);
const journalOf = (host: string) => readdir(join(work, host, 'data', 'orders'));

async function resetFiles(): Promise<void> {
  for (const host of HOSTS) {
    await writeFile(confPath(host), OLD);
    await chmod(confPath(host), 0o644);
  }
  canarySeen = [];
}

function patchWithHealth(title: string) {
  const health: HealthPolicy = {
    checks: [
      {
        kind: 'http',
        name: 'app answers',
        url: `http://127.0.0.1:${(service.address() as AddressInfo).port}/`,
        expectStatus: { min: 200, max: 299 },
        timeoutMs: 2000,
      },
    ],
    intervalSeconds: 0.1,
    minHealthySeconds: 0,
    healthyDeadlineSeconds: 5,
  };
  return fleet.createPatch(sampleFilePatch(CONF, NEW, { title, health }));
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-rehearsal-'));
  // Only the canary is in flight while it rehearses, so every check until wave 2 is the canary's.
  service = createServer((_req, res) => {
    readFile(confPath('web-1'), 'utf8').then(async (text) => {
      const seenNew = canarySeen.includes(NEW);
      canarySeen.push(text);
      if (driftModeOnRevert !== undefined && seenNew && text === OLD) {
        await chmod(confPath('web-1'), driftModeOnRevert);
        driftModeOnRevert = undefined;
      }
      res.writeHead(200).end('ok');
    });
  });
  service.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => service.once('listening', () => resolve()));
  for (const host of HOSTS) await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
  await resetFiles();
  fleet = await FleetHarness.start(join(work, 'coordinator'), { tickIntervalMs: 100 });
  await fleet.spawnRegistered(HOSTS, { role: 'web' }, (host) => ({
    dataDir: join(work, host, 'data'),
    rootDir: rootOf(host),
  }));
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  service?.closeAllConnections();
  await new Promise<void>((resolve) => (service ? service.close(() => resolve()) : resolve()));
  if (work) await rm(work, { recursive: true, force: true });
});

describe('a rehearsed revert on the canary', () => {
  it('applies, reverts to exactly its prior state, applies again and carries on; the status shows it', async () => {
    await resetFiles();
    const patchId = await patchWithHealth('Eight workers');
    const id = await fleet.startRollout({
      patchId,
      target: { labels: { role: 'web' } },
      waves: [1, '100%'],
      rehearseRevert: true,
    });
    const done = await fleet.waitForState(id, ['succeeded', 'halted']);
    expect(done.rollout.state).toBe('succeeded');
    for (const host of HOSTS) expect(await readFile(confPath(host), 'utf8')).toBe(NEW);

    // The canary's service saw the old file, the new, the old again (the rehearsal), then the new.
    expect(canarySeen.filter((text, i) => i === 0 || text !== canarySeen[i - 1])).toEqual([OLD, NEW, OLD, NEW]);
    const canary = hostOf(done, 'web-1');
    expect(canary).toMatchObject({ state: 'healthy', changed: true });
    expect(canary.rehearsal).toMatchObject({ ok: true, differences: [], healthyAfterRevert: true });
    expect(canary.rehearsal?.restored).toEqual(canary.rehearsal?.prior);
    expect(canary.rehearsal?.prior).toMatchObject({ exists: true, mode: '0644', size: OLD.length });
    // Only the canary rehearses.
    expect(hostOf(done, 'web-2').rehearsal).toBeNull();

    const { events } = await fleet.api.get<EventPage>(`/v1/rollouts/${id}/events?limit=500`);
    expect(events.find((e) => e.type === 'host.healthy' && e.hostId === 'web-1')?.data?.rehearsal).toMatchObject({
      ok: true,
    });

    const cli = await runCli(fleet.coordinator.url, ['rollout', 'status', id], { token: ADMIN_TOKEN });
    expect(cli.code).toBe(0);
    expect(cli.stdout).toContain('web-1 rehearsed revert: passed (restored exactly, healthy again, applied again)');
  }, 60_000);

  it('halts before any other host changes when the revert does not restore the prior state, whatever the budget', async () => {
    await resetFiles();
    driftModeOnRevert = 0o666;
    const patchId = await patchWithHealth('Eight workers, again');
    const id = await fleet.startRollout({
      patchId,
      target: { labels: { role: 'web' } },
      waves: [1, '100%'],
      maxFailures: 2,
      rehearseRevert: true,
    });
    const halted = await fleet.waitForState(id, ['succeeded', 'halted']);
    expect(halted.rollout.state).toBe('halted');
    expect(halted.rollout.stateReason).toBe(
      'rehearsed revert failed on web-1: the rehearsed revert did not restore the prior state: mode: 0644 → 0666',
    );
    const canary = hostOf(halted, 'web-1');
    expect(canary).toMatchObject({ state: 'failed', changed: false, errorCode: 'rehearsal_failed' });
    expect(canary.rehearsal).toMatchObject({ ok: false, differences: ['mode: 0644 → 0666'] });
    // The canary is left as the revert left it, for a person to look at: old bytes, drifted mode.
    expect(await readFile(confPath('web-1'), 'utf8')).toBe(OLD);
    expect((await stat(confPath('web-1'))).mode & 0o777).toBe(0o666);
    for (const host of ['web-2', 'web-3']) {
      expect(hostOf(halted, host).state).toBe('queued');
      expect(await readFile(confPath(host), 'utf8')).toBe(OLD);
    }
    // Their journals hold only the first rollout's order: nothing new reached them.
    for (const host of ['web-2', 'web-3']) expect(await journalOf(host)).toHaveLength(1);

    const cli = await runCli(fleet.coordinator.url, ['rollout', 'status', id], { token: ADMIN_TOKEN });
    expect(cli.stdout).toContain('web-1 rehearsed revert: FAILED (mode: 0644 → 0666)');
  }, 60_000);
});
