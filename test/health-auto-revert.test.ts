import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { type EventPage, HealthCheckResultSchema, type RolloutStatus } from '@fleetpatch/shared';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type ApiClient, waitFor, waitForRolloutState } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness } from './support/fleet-harness.js';
import { HostNamespace, namespaces } from './support/host-namespaces.js';
import { describeNeeding } from './support/requirements.js';

// A bad patch stops at the canary and undoes itself. Three test hosts, each a network namespace
// with its own loopback running the same small real HTTP service on 127.0.0.1:8080, whose answer
// depends on a config file the patch changes. The agents health-check that service for real.

const CONF = '/etc/svc/svc.conf';
const GOOD = 'mode = normal\n';
const FAST = 'mode = fast\n';
const BROKEN = 'mode = broken\n';
const HOSTS = ['svc-1', 'svc-2', 'svc-3'];

const SERVICE = `
import http from 'node:http';
import { readFileSync } from 'node:fs';
const [conf, port] = process.argv.slice(2);
http.createServer((req, res) => {
  let text = '';
  try { text = readFileSync(conf, 'utf8'); } catch {}
  const broken = text.includes('broken');
  res.writeHead(broken ? 500 : 200, { 'content-type': 'text/plain' });
  res.end(broken ? 'broken\\n' : 'ok\\n');
}).listen(Number(port), '127.0.0.1', () => console.log('ready'));
`;

describeNeeding([namespaces], 'health checks and automatic revert, on three namespaced hosts', () => {
  let work: string;
  let hosts: HostNamespace[] = [];
  let fleet: FleetHarness;
  let api: ApiClient;
  let approver: ApiClient;
  const services: ChildProcess[] = [];

  const rootOf = (host: string) => join(work, host, 'root');
  const confOf = (host: string) => readFile(join(rootOf(host), CONF), 'utf8');
  /** The orders in a host's journal; its agent made the directory when it started, so it must exist. */
  const journalOf = (host: string) => readdir(join(work, host, 'data', 'orders'));

  /** Asks a host's service, from inside that host. */
  async function probe(index: number): Promise<number> {
    const host = hosts[index] as HostNamespace;
    const child = spawn(
      host.exec[0] as string,
      [
        ...host.exec.slice(1),
        process.execPath,
        '-e',
        'fetch("http://127.0.0.1:8080/").then(r => console.log(r.status), () => console.log(0))',
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
    });
    await once(child, 'exit');
    return Number(out.trim());
  }

  /** CONF set to `content`, healthy while svc answers 2xx; returns the patch id. */
  function createPatch(content: string, title: string): Promise<string> {
    const spec = samplePatch({
      title,
      intendedFix: `set ${content.trim()}`,
      path: CONF,
      content,
      health: {
        checks: [
          {
            kind: 'http',
            name: 'svc answers',
            url: 'http://127.0.0.1:8080/',
            expectStatus: { min: 200, max: 299 },
            timeoutMs: 1000,
          },
        ],
        intervalSeconds: 0.2,
        minHealthySeconds: 0.6,
        healthyDeadlineSeconds: 3,
      },
    });
    return fleet.createPatch(spec);
  }

  /** Creates (as the admin), approves (as the approver) and starts a rollout; returns its id. */
  function launch(patchId: string, rollout: Parameters<typeof sampleRollout>[1]): Promise<string> {
    return fleet.startRollout(sampleRollout(patchId, rollout), { approvedBy: approver });
  }

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'fleetpatch-health-'));
    hosts = HostNamespace.createMany(HOSTS.length);
    // Listening on every address: each namespaced host reaches it through its gateway.
    fleet = await FleetHarness.start(join(work, 'coordinator'), {
      tokens: [{ name: 'approver', token: 'health-e2e-approver-tok-1', role: 'approver' }],
      tickIntervalMs: 100,
      extraConfig: { host: '0.0.0.0' },
    });
    api = fleet.api;
    approver = fleet.client('approver');
    await writeFile(join(work, 'service.mjs'), SERVICE);
    for (const [i, id] of HOSTS.entries()) {
      const host = hosts[i] as HostNamespace;
      await mkdir(join(rootOf(id), 'etc/svc'), { recursive: true });
      await writeFile(join(rootOf(id), CONF), GOOD);
      const service = spawn(
        host.exec[0] as string,
        [...host.exec.slice(1), process.execPath, join(work, 'service.mjs'), join(rootOf(id), CONF), '8080'],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      services.push(service);
      await new Promise<void>((resolve) =>
        createInterface({ input: service.stdout as NodeJS.ReadableStream }).once('line', () => resolve()),
      );
      // Rollouts target app=svc: the admin fixes it in the join token (what the agent reports selects nothing).
      const token = await fleet.register(id, { app: 'svc' });
      fleet.spawnAgent({
        id,
        coordinatorUrl: `http://${host.gatewayIp}:${fleet.coordinator.port}`,
        joinToken: token,
        dataDir: join(work, id, 'data'),
        rootDir: rootOf(id),
        labels: { app: 'svc' },
        wrap: host.exec,
      });
    }
    await fleet.waitOnline(HOSTS);
    for (let i = 0; i < HOSTS.length; i++) expect(await probe(i)).toBe(200);
  });

  afterAll(async () => {
    await fleet?.stopAgents();
    for (const service of services) service.kill('SIGKILL');
    await fleet?.stop();
    for (const host of hosts) host.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('stops a bad patch at the canary, which reverts itself; the other hosts are never touched', async () => {
    const patchId = await createPatch(BROKEN, 'Switch svc to broken mode');
    const id = await launch(patchId, { target: { labels: { app: 'svc' } }, waves: [1, '50%', '100%'], maxFailures: 0 });
    const status = await waitForRolloutState(api, id, ['halted', 'succeeded']);

    expect(status.rollout.state).toBe('halted');
    const [canary, second, third] = status.waves.map((w) => w.hosts[0]);
    expect(canary).toMatchObject({ hostId: 'svc-1', state: 'failed', changed: false, errorCode: 'health_failed' });
    expect(canary?.reason).toMatch(/svc answers.*HTTP 500/);
    expect(canary?.health?.some((h) => !h.ok && /500/.test(h.observed))).toBe(true);
    expect(second?.state).toBe('queued');
    expect(third?.state).toBe('queued');

    // The canary is back: old bytes, and the service answers 200 again.
    expect(await confOf('svc-1')).toBe(GOOD);
    expect(await probe(0)).toBe(200);
    // The others: byte-identical and no order in their journals.
    for (const host of ['svc-2', 'svc-3']) {
      expect(await confOf(host)).toBe(GOOD);
      expect(await journalOf(host)).toEqual([]);
    }
    const { events } = await api.get<EventPage>(`/v1/rollouts/${id}/events?limit=500`);
    expect(events.filter((e) => e.type === 'host.dispatched').map((e) => e.hostId)).toEqual(['svc-1']);
    const failedHealth = HealthCheckResultSchema.array().parse(
      events.find((e) => e.type === 'host.failed')?.data?.health,
    );
    expect(failedHealth.some((h) => !h.ok && /500/.test(h.observed))).toBe(true);
  });

  it('rolls a good patch through, every wave passing its bake before the next starts', async () => {
    const patchId = await createPatch(FAST, 'Switch svc to fast mode');
    const id = await launch(patchId, { target: { labels: { app: 'svc' } }, waves: [1, '50%', '100%'], bakeSeconds: 1 });
    const status = await waitForRolloutState(api, id, ['halted', 'succeeded']);
    expect(status.rollout.state).toBe('succeeded');
    for (const [i, host] of HOSTS.entries()) {
      expect(await confOf(host)).toBe(FAST);
      expect(await probe(i)).toBe(200);
    }
    const { events } = await api.get<EventPage>(`/v1/rollouts/${id}/events?limit=500`);
    const find = (type: string, wave: number) => events.find((e) => e.type === type && e.data?.wave === wave);
    // The bake is counted from the tick that passes the wave, which reads the clock before it writes
    // wave.passed: measure from the wave's last host.healthy (recorded before that tick) instead.
    const healthyAt = (hostId: string) =>
      Date.parse(events.find((e) => e.type === 'host.healthy' && e.hostId === hostId)?.at ?? 'NaN');
    for (const wave of [0, 1]) {
      const passed = find('wave.passed', wave);
      const started = find('wave.started', wave + 1);
      expect(passed?.seq).toBeLessThan(started?.seq ?? Number.NEGATIVE_INFINITY);
      expect(status.waves[wave]?.hosts.length).toBeGreaterThan(0);
      const lastHealthy = Math.max(...(status.waves[wave]?.hosts ?? []).map((h) => healthyAt(h.hostId)));
      expect(Date.parse(started?.at ?? 'NaN') - lastHealthy).toBeGreaterThanOrEqual(1000);
    }
  });

  it('reverts by itself when cut off from the coordinator, and reports when the link is back', async () => {
    const prior = await confOf('svc-2');
    const patchId = await createPatch(BROKEN, 'Break svc while partitioned');
    const id = await launch(patchId, { target: { hostIds: ['svc-2'] }, waves: [1], maxFailures: 0 });
    // Wait until the order is on the host, then cut the host off.
    // The patch is on the host (its service now answers 500) before the host is cut off.
    await waitFor('the patch to land on svc-2', async () => (await confOf('svc-2')) === BROKEN);
    const host = hosts[1] as HostNamespace;
    host.partition();
    try {
      // Alone, the agent sees its health fail and restores the old file.
      await waitFor('svc-2 to restore its config by itself', async () => (await confOf('svc-2')) === prior, {
        timeoutMs: 20_000,
      });
      expect(await probe(1)).toBe(200);
      const during = await api.get<RolloutStatus>(`/v1/rollouts/${id}`);
      expect(during.rollout.state).toBe('running'); // the coordinator has not heard anything yet
    } finally {
      host.heal();
    }
    const status = await waitForRolloutState(api, id, ['halted', 'succeeded'], 60_000);
    expect(status.rollout.state).toBe('halted');
    expect(status.waves[0]?.hosts[0]).toMatchObject({
      hostId: 'svc-2',
      state: 'failed',
      changed: false,
      errorCode: 'health_failed',
    });
  });

  it('reverts by itself when the coordinator dies after delivering, and reports when it is back', async () => {
    const prior = await confOf('svc-3');
    const patchId = await createPatch(BROKEN, 'Break svc while the coordinator is down');
    const id = await launch(patchId, { target: { hostIds: ['svc-3'] }, waves: [1], maxFailures: 0 });
    // The patch is on the host (its service now answers 500) before the coordinator dies.
    await waitFor('the patch to land on svc-3', async () => (await confOf('svc-3')) === BROKEN);
    await fleet.coordinator.kill();
    await waitFor('svc-3 to restore its config by itself', async () => (await confOf('svc-3')) === prior, {
      timeoutMs: 20_000,
    });
    expect(await probe(2)).toBe(200);

    await fleet.restart(); // on the same port: the agents' gateway URL still reaches it
    const status = await waitForRolloutState(api, id, ['halted', 'succeeded'], 60_000);
    expect(status.rollout.state).toBe('halted');
    expect(status.waves[0]?.hosts[0]).toMatchObject({
      hostId: 'svc-3',
      state: 'failed',
      changed: false,
      errorCode: 'health_failed',
    });
  });
});
