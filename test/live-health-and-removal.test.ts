/**
 * Day-2 operations with the real binaries on 127.0.0.1: a canary serving HTTP 500 fails fast with
 * `failAfterConsecutive` (well before its healthy deadline) while the status and the event stream
 * show the failing check; a bake tolerates a short blip (`bakeTolerance`) and still fails on a
 * lasting one; an agent removed from the fleet is cut off, and its key no longer connects.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AgentDetail,
  type AgentList,
  type AgentView,
  CloseCode,
  type EventPage,
  loadPrivateKey,
  type RolloutStatus,
} from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { samplePatch, sampleRollout } from '../scripts/lib/sample-specs.mjs';
import { FleetHarness, hostOf } from './support/fleet-harness.js';
import { connectAsAgent } from './support/raw-agent-socket.js';
import { SseClient } from './support/sse-client.js';

const HOST = 'live-1';
const CONF = '/etc/svc/svc.conf';

// A real HTTP service: 500 while the patched config says "broken" or the test's switch says "fail".
const SERVICE = `
import http from 'node:http';
import { readFileSync } from 'node:fs';
const [conf, control] = process.argv.slice(2);
const read = (file) => { try { return readFileSync(file, 'utf8'); } catch { return ''; } };
const server = http.createServer((req, res) => {
  const bad = read(conf).includes('broken') || read(control).includes('fail');
  res.writeHead(bad ? 500 : 200, { 'content-type': 'text/plain' });
  res.end(bad ? 'broken\\n' : 'ok\\n');
}).listen(0, '127.0.0.1', () => console.log(server.address().port));
`;

let work: string;
let fleet: FleetHarness;
let service: ChildProcess;
let url: string;
const rootDir = () => join(work, HOST, 'root');
const dataDir = () => join(work, HOST, 'data');
const control = () => join(work, 'control');

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-live-health-'));
  await mkdir(join(rootDir(), 'etc/svc'), { recursive: true });
  await writeFile(join(rootDir(), CONF), 'mode = normal\n');
  await writeFile(control(), 'ok\n');
  await writeFile(join(work, 'service.mjs'), SERVICE);
  service = spawn(process.execPath, [join(work, 'service.mjs'), join(rootDir(), CONF), control()], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [port] = (await once(service.stdout as NodeJS.ReadableStream, 'data')) as [Buffer];
  url = `http://127.0.0.1:${port.toString().trim()}/`;
  fleet = await FleetHarness.start(join(work, 'coordinator'), { tickIntervalMs: 50 });
  const joinToken = await fleet.register(HOST, { role: 'svc' });
  fleet.spawnAgent({ id: HOST, joinToken, dataDir: dataDir(), rootDir: rootDir(), labels: { role: 'svc' } });
  await fleet.waitOnline([HOST]);
});

afterAll(async () => {
  await fleet?.stop();
  if (service && service.exitCode === null) {
    service.kill();
    await once(service, 'exit');
  }
  if (work) await rm(work, { recursive: true, force: true });
});

/** A patch of CONF health-checked against the service every `intervalSeconds`. */
function patch(content: string, health: Record<string, unknown>): Promise<string> {
  return fleet.createPatch(
    samplePatch({
      path: CONF,
      content,
      health: {
        checks: [{ kind: 'http', name: 'svc answers', url, expectStatus: { min: 200, max: 299 }, timeoutMs: 1000 }],
        ...health,
      },
    }),
  );
}

const liveOf = async (rolloutId: string) => hostOf(await fleet.status(rolloutId), HOST);

describe('fail fast', () => {
  it('a canary serving HTTP 500 fails after 3 failing polls, long before its 60 s deadline, its failing check in view', async () => {
    const patchId = await patch('mode = broken\n', {
      intervalSeconds: 0.5,
      healthyDeadlineSeconds: 60,
      failAfterConsecutive: 3,
    });
    const rolloutId = await fleet.createRollout(sampleRollout(patchId, { waves: ['100%'], requiredApprovals: 0 }));
    const stream = await SseClient.open(`${fleet.coordinator.url}/v1/rollouts/${rolloutId}/events/stream`);
    try {
      const started = Date.now();
      await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
      // The status while verifying: the failing check, what it saw, since when.
      const seen = await waitFor(
        'the status to show the failing check while verifying',
        async () => {
          const host = await liveOf(rolloutId);
          return host.state === 'verifying' && host.liveHealth?.checks[0]?.ok === false ? host : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 25 },
      );
      expect(seen.liveHealth).toMatchObject({
        phase: 'verifying',
        checks: [{ check: 'svc answers', kind: 'http', ok: false, observed: expect.stringContaining('500') }],
      });
      expect(seen.liveHealth?.failingPolls).toBeGreaterThanOrEqual(1);
      // The stream carried it as it happened, before the host failed, and once, not once per poll.
      const frames = await stream.until((f) => f.event === 'host.failed' || f.event === 'rollout.halted');
      const elapsed = Date.now() - started;
      const health = frames.filter((f) => f.event === 'host.health');
      expect(health.length).toBe(1);
      expect(health[0]?.data).toMatchObject({
        hostId: HOST,
        data: { phase: 'verifying', checks: [{ check: 'svc answers', ok: false }] },
      });
      expect(frames.findIndex((f) => f.event === 'host.health')).toBeLessThan(
        frames.findIndex((f) => f.event === 'host.failed'),
      );
      const status = await fleet.waitForState(rolloutId, ['halted']);
      const host = hostOf(status, HOST);
      expect(host).toMatchObject({ state: 'failed', errorCode: 'health_failed', changed: false });
      expect(host.reason).toMatch(/3 failing polls in a row \(failAfterConsecutive\)/);
      // Three polls half a second apart, and the revert: seconds, not the 60 s deadline.
      expect(elapsed).toBeLessThan(30_000);
      expect(await readFile(join(rootDir(), CONF), 'utf8')).toBe('mode = normal\n');
    } finally {
      stream.close();
    }
  });

  it('after retry, the previous attempt’s health is not shown as current', async () => {
    const { rollouts } = await fleet.api.get<{ rollouts: { id: string; state: string }[] }>('/v1/rollouts');
    const halted = rollouts.find((r) => r.state === 'halted');
    if (!halted) throw new Error('no halted rollout to retry');
    // The status the retry answers with, taken as it requeued the host: nothing of the last attempt.
    const retried = hostOf(await fleet.api.post<RolloutStatus>(`/v1/rollouts/${halted.id}/retry`), HOST);
    expect(retried).toMatchObject({ state: 'queued', health: null, errorCode: null, reason: null });
    expect(retried.liveHealth).toBeUndefined();
    await fleet.waitForState(halted.id, ['halted']);
  });
});

describe('bake tolerance', () => {
  it('a short blip during the bake is tolerated; a lasting one fails the host and reverts it', async () => {
    const patchId = await patch('mode = fast\n', {
      intervalSeconds: 0.5,
      healthyDeadlineSeconds: 30,
      bakeTolerance: { consecutiveFailures: 4 },
    });
    const rolloutId = await fleet.startRollout(
      sampleRollout(patchId, { waves: ['100%'], bakeSeconds: 120, requiredApprovals: 0 }),
    );
    await waitFor(
      'the host to bake',
      async () => (await liveOf(rolloutId)).liveHealth?.phase === 'baking' || undefined,
      { timeoutMs: 20_000 },
    );
    // A blip: one or two failing polls, then healthy again.
    await writeFile(control(), 'fail\n');
    await waitFor(
      'a failing poll during the bake',
      async () => ((await liveOf(rolloutId)).liveHealth?.failingPolls ?? 0) >= 1 || undefined,
      { timeoutMs: 10_000, intervalMs: 25 },
    );
    await writeFile(control(), 'ok\n');
    await waitFor(
      'a passing poll again',
      async () => (await liveOf(rolloutId)).liveHealth?.failingPolls === 0 || undefined,
      { timeoutMs: 10_000, intervalMs: 25 },
    );
    expect(await liveOf(rolloutId)).toMatchObject({ state: 'healthy', changed: true });
    expect(await readFile(join(rootDir(), CONF), 'utf8')).toBe('mode = fast\n');

    // Lasting: four failing polls in a row fail the host, which restores its snapshot.
    await writeFile(control(), 'fail\n');
    const status = await fleet.waitForState(rolloutId, ['halted'], 30_000);
    const host = hostOf(status, HOST);
    expect(host).toMatchObject({ state: 'failed', errorCode: 'health_failed' });
    expect(host.reason).toMatch(/during bake: .*\(4 failing polls in a row, bakeTolerance\)/);
    await waitFor(
      'the host to restore its snapshot',
      async () => (await readFile(join(rootDir(), CONF), 'utf8')) === 'mode = normal\n' || undefined,
      { timeoutMs: 10_000 },
    );
    await writeFile(control(), 'ok\n');
  });
});

describe('removing an agent', () => {
  it('cuts its connection, keeps its history, and its key no longer connects (attack: the removed agent reconnecting)', async () => {
    const removed = await fleet.api.raw('DELETE', `/v1/agents/${HOST}`);
    expect(removed.status).toBe(200);
    expect(((await removed.json()) as AgentView).removedAt).toEqual(expect.any(String));
    await waitFor(
      'the removed agent to be offline',
      async () => !(await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`)).agent.online || undefined,
      { timeoutMs: 10_000 },
    );
    // Gone from the fleet, not from history.
    expect((await fleet.api.get<AgentList>('/v1/agents')).agents.map((a) => a.id)).not.toContain(HOST);
    expect((await fleet.api.get<AgentList>('/v1/agents?removed=true')).agents.map((a) => a.id)).toContain(HOST);
    const detail = await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`);
    expect(detail.hostRuns.length).toBeGreaterThan(0);
    const { events } = await fleet.api.get<EventPage>('/v1/events?limit=1000');
    expect(events.filter((e) => e.hostId === HOST).map((e) => e.type)).toEqual(
      expect.arrayContaining(['agent.enrolled', 'agent.removed']),
    );

    // The agent's own key, as an attacker holding it would use it: refused with 4401.
    const credential = JSON.parse(await readFile(join(dataDir(), 'credential.json'), 'utf8')) as {
      privateKeyPem: string;
    };
    const attempt = await connectAsAgent(fleet.coordinator.port, HOST, loadPrivateKey(credential.privateKeyPem));
    attempt.peer.destroy();
    expect(attempt).toMatchObject({ welcomed: false, closeCode: CloseCode.unauthorized });
    // And the real agent, still running and redialling, stays out.
    expect((await fleet.api.get<AgentDetail>(`/v1/agents/${HOST}`)).agent.online).toBe(false);
    // A rollout no longer selects it.
    const patchId = await patch('mode = later\n', {});
    const rolloutId = await fleet.createRollout(sampleRollout(patchId, { requiredApprovals: 0 }));
    const refused = await fleet.api.raw('POST', `/v1/rollouts/${rolloutId}/start`, {});
    expect(refused.status).toBe(409);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toBe(
      'the target selects no hosts',
    );
    expect((await fleet.status(rolloutId)).rollout.state).not.toBe('running');
  });
});
