import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAgentKeyPair, loadPrivateKey } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  apiClient,
  issueJoinToken,
  startAgent,
  startCoordinator,
  waitFor,
  waitForAgentsOnline,
  waitForRolloutState,
} from '../scripts/lib/local-fleet.mjs';
import {
  agentSocketUrl,
  closeCode,
  connectAs,
  enrollIdentity,
  enrollWith,
  nextFrame,
  openAgentSocket,
  signedHello,
} from './support/agent-identity.js';

// The walking skeleton, end to end: a real coordinator process, three real agent processes on
// 127.0.0.1, each confined to its own scratch root; real files checked on disk.

const PATH = '/etc/app/app.conf';
const OLD = 'listen = 8080\nworkers = 2\n';
const NEW = 'listen = 8080\nworkers = 8\n';
const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const HOSTS = ['web-1', 'web-2', 'web-3'];
const TOKENS = { admin: 'test-admin-token-0001', alice: 'test-alice-token-0001', bob: 'test-bob-token-000001' };

type Api = ReturnType<typeof apiClient>;

let work: string;
let coordinator: Awaited<ReturnType<typeof startCoordinator>>;
const agents: ReturnType<typeof startAgent>[] = [];
let admin: Api;
let alice: Api;
let bob: Api;

const rootOf = (host: string) => join(work, host, 'root');

async function resetFiles(): Promise<void> {
  for (const host of HOSTS) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
    await chmod(join(rootOf(host), 'etc/app'), 0o755);
    await writeFile(join(rootOf(host), PATH), OLD, { mode: 0o644 });
    await chmod(join(rootOf(host), PATH), 0o644);
  }
}

function patchBody(overrides: Record<string, unknown> = {}) {
  return {
    title: 'More workers for app',
    problem: 'Requests queue at peak.',
    rootCause: 'Too few workers.',
    intendedFix: 'workers = 8',
    ticket: 'OPS-1',
    change: {
      kind: 'file',
      path: PATH,
      content: NEW,
      mode: '0600',
      owner: '65534',
      group: '65534',
      expectedPriorSha256: sha256(OLD),
    },
    ...overrides,
  };
}

/** Creates, approves (as bob) and starts (as alice) a rollout; returns its id. */
async function launch(rollout: Record<string, unknown>): Promise<string> {
  const created = await alice.post('/v1/rollouts', rollout);
  const id = created.rollout.id as string;
  await bob.post(`/v1/rollouts/${id}/approve`);
  await alice.post(`/v1/rollouts/${id}/start`);
  return id;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-e2e-'));
  await resetFiles();
  coordinator = await startCoordinator({
    dataDir: join(work, 'coordinator'),
    apiTokens: [
      { name: 'admin', token: TOKENS.admin, role: 'admin' },
      { name: 'alice', token: TOKENS.alice, role: 'operator' },
      { name: 'bob', token: TOKENS.bob, role: 'approver' },
    ],
  });
  admin = apiClient(coordinator.url, TOKENS.admin);
  alice = apiClient(coordinator.url, TOKENS.alice);
  bob = apiClient(coordinator.url, TOKENS.bob);
  for (const host of HOSTS) {
    const joinToken = await issueJoinToken(admin, host, { role: 'web' });
    agents.push(
      startAgent({
        coordinatorUrl: coordinator.url,
        hostId: host,
        joinToken,
        dataDir: join(work, host, 'data'),
        rootDir: rootOf(host),
        labels: { role: 'web' },
      }),
    );
  }
  await waitForAgentsOnline(admin, HOSTS);
});

afterAll(async () => {
  await Promise.all(agents.map((a) => a.stop()));
  await coordinator?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('a file patch rolled out in waves', () => {
  it('reports each agent with facts and labels', async () => {
    const { agents: listed } = await admin.get('/v1/agents');
    expect(listed.map((a: { id: string }) => a.id)).toEqual(HOSTS);
    for (const agent of listed) {
      expect(agent.online).toBe(true);
      expect(agent.labels).toEqual({ role: 'web' });
      expect(agent.reportedLabels).toEqual({ role: 'web' });
      expect(agent.facts.os).toBe('linux');
      expect(agent.facts.cpus).toBeGreaterThan(0);
      expect(agent.lastSeenAt).not.toBeNull();
    }
  });

  it('plans, applies wave by wave, and reverts in one call to the exact prior bytes, mode and owner', async () => {
    await resetFiles();
    const patch = await alice.post('/v1/patches', patchBody());
    const created = await alice.post('/v1/rollouts', {
      patchId: patch.id,
      target: { labels: { role: 'web' } },
      waves: [1, '50%', '100%'],
      maxFailures: 0,
    });
    const id = created.rollout.id as string;
    expect(created.rollout.state).toBe('awaiting_approval');

    const plan = await alice.get(`/v1/rollouts/${id}/plan`);
    expect(plan.waveSizes).toEqual([1, 1, 1]);
    expect(plan.waves.map((w: { hosts: string[] }) => w.hosts)).toEqual([['web-1'], ['web-2'], ['web-3']]);
    expect(plan.haltsOn).toBe('halts on the 1st failure');

    await bob.post(`/v1/rollouts/${id}/approve`);
    await alice.post(`/v1/rollouts/${id}/start`);
    const done = await waitForRolloutState(alice, id, ['succeeded', 'halted']);
    expect(done.rollout.state).toBe('succeeded');
    expect(done.waves.map((w: { phase: string }) => w.phase)).toEqual(['passed', 'passed', 'passed']);

    for (const host of HOSTS) {
      const file = join(rootOf(host), PATH);
      const info = await stat(file);
      expect(await readFile(file, 'utf8')).toBe(NEW);
      expect(info.mode & 0o7777).toBe(0o600);
      expect([info.uid, info.gid]).toEqual([65534, 65534]);
      expect((await readdir(join(rootOf(host), 'etc/app'))).sort()).toEqual(['app.conf']); // no temp files
    }

    // Waves really were sequential: each host's dispatch follows the previous wave passing.
    const { events } = await alice.get(`/v1/rollouts/${id}/events?limit=1000`);
    const order = events
      .filter((e: { type: string }) => e.type === 'host.dispatched' || e.type === 'wave.passed')
      .map((e: { type: string; hostId: string | null; data: { wave: number } }) =>
        e.type === 'wave.passed' ? `passed:${e.data.wave}` : `dispatch:${e.hostId}`,
      );
    expect(order).toEqual(['dispatch:web-1', 'passed:0', 'dispatch:web-2', 'passed:1', 'dispatch:web-3', 'passed:2']);

    await alice.post(`/v1/rollouts/${id}/revert`);
    const reverted = await waitForRolloutState(alice, id, ['reverted', 'revert_failed']);
    expect(reverted.rollout.state).toBe('reverted');
    for (const host of HOSTS) {
      const file = join(rootOf(host), PATH);
      const info = await stat(file);
      expect(await readFile(file, 'utf8')).toBe(OLD);
      expect(info.mode & 0o7777).toBe(0o644);
      expect([info.uid, info.gid]).toEqual([0, 0]);
    }
    expect(reverted.waves.flatMap((w: { hosts: { state: string }[] }) => w.hosts.map((h) => h.state))).toEqual([
      'reverted',
      'reverted',
      'reverted',
    ]);
  });

  it('creates a file that did not exist, and revert removes it again', async () => {
    const patch = await alice.post(
      '/v1/patches',
      patchBody({
        change: {
          kind: 'file',
          path: '/etc/app/extra.conf',
          content: 'x=1\n',
          mode: '0644',
          owner: 'root',
          group: 'root',
          expectedPriorSha256: 'absent',
        },
      }),
    );
    const id = await launch({ patchId: patch.id, target: { hostIds: ['web-2', 'web-3'] }, waves: ['100%'] });
    expect((await waitForRolloutState(alice, id, ['succeeded', 'halted'])).rollout.state).toBe('succeeded');
    expect(await readFile(join(rootOf('web-2'), '/etc/app/extra.conf'), 'utf8')).toBe('x=1\n');
    await expect(stat(join(rootOf('web-1'), '/etc/app/extra.conf'))).rejects.toThrow(/ENOENT/);

    await alice.post(`/v1/rollouts/${id}/revert`);
    expect((await waitForRolloutState(alice, id, ['reverted', 'revert_failed'])).rollout.state).toBe('reverted');
    for (const host of ['web-2', 'web-3']) {
      await expect(stat(join(rootOf(host), '/etc/app/extra.conf'))).rejects.toThrow(/ENOENT/);
    }
  });
});

describe('the failure budget', () => {
  it('halts on the first failure with maxFailures 0 and never touches the next waves', async () => {
    await resetFiles();
    // web-1 (the canary) cannot be written: its directory is group-writable, which the agent refuses.
    await chmod(join(rootOf('web-1'), 'etc/app'), 0o775);
    const patch = await alice.post('/v1/patches', patchBody());
    const id = await launch({ patchId: patch.id, target: { all: true }, waves: [1, '50%', '100%'], maxFailures: 0 });
    const halted = await waitForRolloutState(alice, id, ['halted', 'succeeded']);
    expect(halted.rollout.state).toBe('halted');
    expect(halted.rollout.stateReason).toMatch(/failure budget exceeded: 1 failed, 0 tolerated/);
    const canary = halted.waves[0].hosts[0];
    expect(canary).toMatchObject({ hostId: 'web-1', state: 'failed', changed: false, errorCode: 'policy_denied' });
    expect(halted.waves[1].hosts[0].state).toBe('queued');
    expect(halted.waves[2].hosts[0].state).toBe('queued');
    for (const host of HOSTS) expect(await readFile(join(rootOf(host), PATH), 'utf8')).toBe(OLD);
    const { events } = await alice.get(`/v1/rollouts/${id}/events?limit=1000`);
    expect(
      events.filter((e: { type: string }) => e.type === 'host.dispatched').map((e: { hostId: string }) => e.hostId),
    ).toEqual(['web-1']);
  });

  it('carries on while failures stay within the budget', async () => {
    await resetFiles();
    await chmod(join(rootOf('web-1'), 'etc/app'), 0o775);
    const patch = await alice.post('/v1/patches', patchBody());
    const id = await launch({ patchId: patch.id, target: { all: true }, waves: [1, '100%'], maxFailures: 1 });
    const done = await waitForRolloutState(alice, id, ['halted', 'succeeded']);
    expect(done.rollout.state).toBe('succeeded');
    expect(done.failures).toBe(1);
    expect(await readFile(join(rootOf('web-1'), PATH), 'utf8')).toBe(OLD);
    expect(await readFile(join(rootOf('web-2'), PATH), 'utf8')).toBe(NEW);
    expect(await readFile(join(rootOf('web-3'), PATH), 'utf8')).toBe(NEW);
    await chmod(join(rootOf('web-1'), 'etc/app'), 0o755);
  });

  it('refuses drift: a host whose file is not what the patch expected is not overwritten', async () => {
    await resetFiles();
    await writeFile(join(rootOf('web-1'), PATH), 'edited by hand\n');
    const patch = await alice.post('/v1/patches', patchBody());
    const id = await launch({ patchId: patch.id, target: { hostIds: ['web-1'] }, waves: [1] });
    const halted = await waitForRolloutState(alice, id, ['halted', 'succeeded']);
    expect(halted.waves[0].hosts[0]).toMatchObject({ state: 'failed', errorCode: 'precondition_failed' });
    expect(halted.waves[0].hosts[0].reason).toMatch(/drift/);
    expect(await readFile(join(rootOf('web-1'), PATH), 'utf8')).toBe('edited by hand\n');
  });
});

describe('dry run', () => {
  it('asks every target what it would do, and changes nothing', async () => {
    await resetFiles();
    await writeFile(join(rootOf('web-1'), PATH), 'edited by hand\n');
    await writeFile(join(rootOf('web-2'), PATH), NEW, { mode: 0o600 });
    await chmod(join(rootOf('web-2'), PATH), 0o600);
    const { chown } = await import('node:fs/promises');
    await chown(join(rootOf('web-2'), PATH), 65534, 65534);
    const patch = await alice.post('/v1/patches', patchBody());
    const created = await alice.post('/v1/rollouts', { patchId: patch.id, target: { all: true } });
    const dry = await alice.post(`/v1/rollouts/${created.rollout.id}/preflight`, { timeoutSeconds: 10 });
    const byHost = Object.fromEntries(
      dry.results.map((r: { hostId: string; outcome: string }) => [r.hostId, r.outcome]),
    );
    expect(byHost).toEqual({ 'web-1': 'would_fail', 'web-2': 'already_applied', 'web-3': 'would_apply' });
    expect(dry.results.find((r: { hostId: string }) => r.hostId === 'web-1').reason).toMatch(/drift/);
    expect(await readFile(join(rootOf('web-1'), PATH), 'utf8')).toBe('edited by hand\n');
    expect(await readFile(join(rootOf('web-3'), PATH), 'utf8')).toBe(OLD);
    expect((await alice.get(`/v1/rollouts/${created.rollout.id}`)).rollout.state).toBe('awaiting_approval');
  });
});

describe('bad input is refused and changes nothing', () => {
  it('answers 400 naming the failing fields, and stores nothing', async () => {
    const before = (await alice.get('/v1/patches?limit=500')).patches.length;
    const res = await alice.raw('POST', '/v1/patches', {
      ...patchBody(),
      problem: '',
      change: { kind: 'file', path: 'etc/../passwd', content: 'x', mode: '999', owner: 'root', group: 'root' },
    });
    expect(res.status).toBe(400);
    const body = await res.json();
    expect(body.error.code).toBe('validation_failed');
    const paths = body.error.details.issues.map((i: { path: string }) => i.path);
    expect(paths).toEqual(expect.arrayContaining(['body.problem', 'body.change.path', 'body.change.mode']));
    expect((await alice.get('/v1/patches?limit=500')).patches.length).toBe(before);
  });

  it('refuses malformed JSON, unknown fields and bad wave steps', async () => {
    const broken = await alice.raw('POST', '/v1/patches', '{"title":');
    expect(broken.status).toBe(400);
    const unknown = await alice.raw('POST', '/v1/patches', { ...patchBody(), extra: true });
    expect(unknown.status).toBe(400);
    const patch = await alice.post('/v1/patches', patchBody());
    const waves = await alice.raw('POST', '/v1/rollouts', {
      patchId: patch.id,
      target: { all: true },
      waves: [0, '-5%'],
    });
    expect(waves.status).toBe(400);
    const paths = (await waves.json()).error.details.issues.map((i: { path: string }) => i.path);
    expect(paths.some((p: string) => p.startsWith('body.waves'))).toBe(true);
    const noTarget = await alice.raw('POST', '/v1/rollouts', { patchId: patch.id, target: {} });
    expect(noTarget.status).toBe(400);
    const ghost = await alice.raw('POST', '/v1/rollouts', { patchId: patch.id, target: { hostIds: ['nope-1'] } });
    expect(ghost.status).toBe(400);
    expect((await ghost.json()).error.message).toMatch(/unknown host ids: nope-1/);
  });

  it('refuses callers without a valid token or the right role', async () => {
    expect((await apiClient(coordinator.url, 'wrong-token-000000').raw('GET', '/v1/agents')).status).toBe(401);
    expect((await bob.raw('POST', '/v1/patches', patchBody())).status).toBe(403);
    const patch = await alice.post('/v1/patches', patchBody());
    const created = await alice.post('/v1/rollouts', { patchId: patch.id, target: { all: true } });
    const self = await alice.raw('POST', `/v1/rollouts/${created.rollout.id}/approve`, {});
    expect(self.status).toBe(403);
    const early = await alice.raw('POST', `/v1/rollouts/${created.rollout.id}/start`, {});
    expect(early.status).toBe(409);
    expect((await early.json()).error.details.state).toBe('awaiting_approval');
  });

  it('closes a socket that cannot prove it is an enrolled agent with 4401, records nothing, and leaves the real agent alone', async () => {
    const ids = async () => (await admin.get('/v1/agents')).agents.map((a: { id: string }) => a.id);
    const before = await ids();
    const anonymous = new WebSocket(agentSocketUrl(coordinator.url));
    expect(await closeCode(anonymous)).toBe(4401);
    // A stranger's key for a live host, and a made-up host: both refused after the challenge.
    const impostor = { hostId: 'web-1', ...freshKey() };
    const ghost = { hostId: 'ghost-1', ...freshKey() };
    for (const identity of [impostor, ghost]) {
      const socket = openAgentSocket(coordinator.url, identity.hostId);
      const closed = closeCode(socket);
      const { nonce } = await nextFrame<{ type: 'challenge'; nonce: string }>(socket, 'challenge');
      socket.send(JSON.stringify(signedHello(identity, nonce)));
      expect(await closed).toBe(4401);
    }
    expect(await ids()).toEqual(before);
    expect((await admin.get('/v1/agents/web-1')).agent.online).toBe(true);
  });

  it('closes an agent that sends a frame over the size limit with 1009 and stays up', async () => {
    const identity = await enrollIdentity(coordinator.url, admin, 'big-frame-1');
    const socket = await connectAs(coordinator.url, identity);
    const closed = closeCode(socket);
    socket.send('x'.repeat(5 * 1024 * 1024));
    expect(await closed).toBe(1009);
    expect((await fetch(`${coordinator.url}/healthz`)).status).toBe(200);
  });

  it('closes an agent that sends a malformed frame with 4400 and stays up', async () => {
    const identity = await enrollIdentity(coordinator.url, admin, 'bad-frame-1');
    const socket = openAgentSocket(coordinator.url, identity.hostId);
    const closed = closeCode(socket);
    await nextFrame(socket, 'challenge');
    socket.send(JSON.stringify({ type: 'hello', protocolVersion: 'one' }));
    expect(await closed).toBe(4400);
    expect((await fetch(`${coordinator.url}/healthz`)).status).toBe(200);
  });
});

function freshKey() {
  const pair = generateAgentKeyPair();
  return { publicKey: pair.publicKey, privateKey: loadPrivateKey(pair.privateKeyPem) };
}

describe('the fleet and its audit trail', () => {
  it("shows one host's history across rollouts", async () => {
    const detail = await alice.get('/v1/agents/web-2');
    expect(detail.agent).toMatchObject({ id: 'web-2', online: true });
    expect(detail.hostRuns.length).toBeGreaterThan(0);
    expect(detail.hostRuns.some((r: { state: string }) => r.state === 'reverted')).toBe(true);
    expect((await alice.raw('GET', '/v1/agents/nope-9')).status).toBe(404);
  });

  it('pages every event: join tokens issued, agents enrolled, patches created, rollouts', async () => {
    const first = await alice.get('/v1/events?limit=5');
    expect(first.events).toHaveLength(5);
    expect(first.events[0]).toMatchObject({ type: 'join_token.created', actor: 'admin', hostId: 'web-1' });
    const all = await alice.get(`/v1/events?after=0&limit=1000`);
    const types = new Set(all.events.map((e: { type: string }) => e.type));
    for (const type of [
      'join_token.created',
      'agent.enrolled',
      'agent.connected',
      'patch.created',
      'rollout.created',
      'rollout.approved',
    ]) {
      expect(types.has(type)).toBe(true);
    }
  });

  it('revokes an agent in one call: its key stops working at once, and only a replace join token brings it back', async () => {
    const old = await enrollIdentity(coordinator.url, admin, 'rotate-1');
    const socket = await connectAs(coordinator.url, old);
    const closed = closeCode(socket);
    expect((await alice.raw('POST', '/v1/agents/rotate-1/revoke', {})).status).toBe(403);
    const revoked = await admin.post('/v1/agents/rotate-1/revoke');
    expect(revoked.revokedAt).not.toBeNull();
    expect(await closed).toBe(4401);
    await expect(connectAs(coordinator.url, old)).rejects.toThrow(/closed \(4401\)/);
    // A plain join token cannot take an enrolled (or revoked) host id; one made for it with replace can.
    await expect(enrollIdentity(coordinator.url, admin, 'rotate-1')).rejects.toThrow(/HTTP 409/);
    const { token } = await admin.post('/v1/join-tokens', { hostId: 'rotate-1', replace: true });
    const fresh = await enrollWith(coordinator.url, token, 'rotate-1');
    const renewed = await connectAs(coordinator.url, fresh);
    await expect(connectAs(coordinator.url, old)).rejects.toThrow(/closed \(4401\)/);
    const events = await alice.get('/v1/events?limit=1000');
    const types = events.events
      .filter((e: { hostId: string }) => e.hostId === 'rotate-1')
      .map((e: { type: string }) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(['agent.enrolled', 'agent.revoked', 'agent.enroll_refused', 'agent.reenrolled']),
    );
    renewed.close();
  });
});

describe('stopping an agent', () => {
  it('drains on SIGTERM: the running order finishes and reports before the agent exits', async () => {
    await resetFiles();
    const patch = await alice.post(
      '/v1/patches',
      patchBody({
        health: {
          checks: [{ kind: 'file', path: PATH }],
          intervalSeconds: 0.2,
          // Long enough that polling (every 50 ms, slower on a loaded machine) sees 'verifying'.
          minHealthySeconds: 5,
          healthyDeadlineSeconds: 20,
        },
      }),
    );
    const id = await launch({ patchId: patch.id, target: { hostIds: ['web-3'] }, waves: [1] });
    await waitFor(
      'web-3 to be verifying',
      async () => (await alice.get(`/v1/rollouts/${id}`)).waves[0].hosts[0].state === 'verifying',
    );
    const agent = agents[2] as ReturnType<typeof startAgent>;
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    const done = await waitForRolloutState(alice, id, ['succeeded', 'halted']);
    expect(done.waves[0].hosts[0]).toMatchObject({ hostId: 'web-3', state: 'healthy', changed: true });
    expect(await readFile(join(rootOf('web-3'), PATH), 'utf8')).toBe(NEW);
    agents[2] = startAgent({
      // Its key is in its data dir: a restart needs no join token.
      coordinatorUrl: coordinator.url,
      hostId: 'web-3',
      dataDir: join(work, 'web-3', 'data'),
      rootDir: rootOf('web-3'),
      labels: { role: 'web' },
    });
    await waitForAgentsOnline(admin, ['web-3']);
  });
});

describe('agents reconnect', () => {
  it('come back by themselves when the coordinator restarts', async () => {
    const port = coordinator.port;
    await coordinator.stop();
    coordinator = await startCoordinator({
      dataDir: join(work, 'coordinator'),
      port,
      apiTokens: [{ name: 'admin', token: TOKENS.admin, role: 'admin' }],
    });
    admin = apiClient(coordinator.url, TOKENS.admin);
    await waitForAgentsOnline(admin, HOSTS, 30_000);
    await waitFor('healthz to count three agents', async () => (await admin.get('/healthz')).agentsOnline >= 3);
  });
});
