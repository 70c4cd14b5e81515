import { chmod, chown, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AgentDetail,
  type AgentList,
  type AgentView,
  type EventPage,
  generateAgentKeyPair,
  type Healthz,
  type JoinTokenCreated,
  loadPrivateKey,
  type Patch,
  type PatchList,
  type PreflightResult,
  type RolloutPlan,
  type RolloutStatus,
} from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  type AgentProcess,
  type ApiClient,
  apiClient,
  waitFor,
  waitForRolloutState,
} from '../scripts/lib/local-fleet.mjs';
import { type SamplePatchOptions, samplePatch, sampleRollout, sha256Of } from '../scripts/lib/sample-specs.mjs';
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
import { errorBody, FleetHarness, issuePaths } from './support/fleet-harness.js';
import { describeNeeding, itNeeding, root } from './support/requirements.js';

// The walking skeleton, end to end: a real coordinator process, three real agent processes on
// 127.0.0.1, each confined to its own scratch root; real files checked on disk. Changing a file's
// owner needs root: those tests say so in their titles and are skipped without it.

const PATH = '/etc/app/app.conf';
const OLD = 'listen = 8080\nworkers = 2\n';
const NEW = 'listen = 8080\nworkers = 8\n';
const HOSTS = ['web-1', 'web-2', 'web-3'];

let work: string;
let fleet: FleetHarness;
const agents = new Map<string, AgentProcess>();
let admin: ApiClient;
let alice: ApiClient;
let bob: ApiClient;

const rootOf = (host: string) => join(work, host, 'root');
const agentOf = (host: string) => ({
  id: host,
  dataDir: join(work, host, 'data'),
  rootDir: rootOf(host),
  labels: { role: 'web' },
});

/**
 * The original file: mode 0640, owned by neither root nor the patch's owner, so a restore that put
 * back only the bytes (leaving the patch's mode and owner, or a default 0644 root:root) shows.
 */
const OLD_MODE = 0o640;
const OLD_OWNER = { uid: 4242, gid: 4343 };

/** Each host's root with /etc/app (mode 0755, as the agent requires of a parent directory). */
async function makeRoots(): Promise<void> {
  for (const host of HOSTS) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true, mode: 0o755 });
    await chmod(join(rootOf(host), 'etc/app'), 0o755);
  }
}

/** Every host's PATH back to OLD, with the original mode and owner (chown: needs root). */
async function resetFiles(): Promise<void> {
  await makeRoots();
  for (const host of HOSTS) {
    await writeFile(join(rootOf(host), PATH), OLD, { mode: OLD_MODE });
    await chmod(join(rootOf(host), PATH), OLD_MODE);
    await chown(join(rootOf(host), PATH), OLD_OWNER.uid, OLD_OWNER.gid);
  }
}

/** OLD → NEW at PATH, owned by nobody with mode 0600 (so apply and revert both show on disk). */
const WORKERS: SamplePatchOptions = { path: PATH, content: NEW, mode: '0600', owner: '65534', group: '65534' };
const patchBody = (options: SamplePatchOptions = {}) =>
  samplePatch({ ...WORKERS, expectedPriorSha256: sha256Of(OLD), ...options });

/** Creates (as alice), approves (as bob) and starts (as alice) a rollout of `patch`; returns its id. */
function launch(patch: Patch, rollout: Parameters<typeof sampleRollout>[1]): Promise<string> {
  return fleet.startRollout(sampleRollout(patch.id, rollout), { by: alice, approvedBy: bob });
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-e2e-'));
  await makeRoots();
  fleet = await FleetHarness.start(join(work, 'coordinator'), {
    tokens: [
      { name: 'alice', token: 'test-alice-token-0001', role: 'operator' },
      { name: 'bob', token: 'test-bob-token-000001', role: 'approver' },
    ],
    tickIntervalMs: 100,
  });
  admin = fleet.api;
  alice = fleet.client('alice');
  bob = fleet.client('bob');
  for (const host of HOSTS) {
    const joinToken = await fleet.register(host, { role: 'web' });
    agents.set(host, fleet.spawnAgent({ ...agentOf(host), joinToken }));
  }
  await fleet.waitOnline(HOSTS);
});

afterAll(async () => {
  await fleet?.stop();
  await rm(work, { recursive: true, force: true });
});

describe('the fleet', () => {
  it('reports each agent with facts and labels', async () => {
    // Online comes with the welcome; the agent's facts follow in a message of their own.
    const { agents: listed } = await waitFor(
      'every agent to have reported its facts',
      async () => {
        const list = await admin.get<AgentList>('/v1/agents');
        return list.agents.every((a) => a.facts !== null && a.facts !== undefined) ? list : undefined;
      },
      { timeoutMs: 20_000 },
    );
    expect(listed.map((a) => a.id)).toEqual(HOSTS);
    for (const agent of listed) {
      expect(agent.online).toBe(true);
      expect(agent.labels).toEqual({ role: 'web' });
      expect(agent.reportedLabels).toEqual({ role: 'web' });
      expect(agent.facts?.os).toBe('linux');
      expect(agent.facts?.cpus).toBeGreaterThan(0);
      expect(agent.lastSeenAt).not.toBeNull();
    }
  });
});

describeNeeding([root], 'a file patch rolled out in waves', () => {
  it('plans, applies wave by wave, and reverts in one call to the exact prior bytes, mode and owner', async () => {
    await resetFiles();
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const created = await alice.post<RolloutStatus>(
      '/v1/rollouts',
      sampleRollout(patch.id, { target: { labels: { role: 'web' } }, waves: [1, '50%', '100%'], maxFailures: 0 }),
    );
    const id = created.rollout.id;
    expect(created.rollout.state).toBe('awaiting_approval');

    const plan = await alice.get<RolloutPlan>(`/v1/rollouts/${id}/plan`);
    expect(plan.waveSizes).toEqual([1, 1, 1]);
    expect(plan.waves.map((w) => w.hosts)).toEqual([['web-1'], ['web-2'], ['web-3']]);
    expect(plan.haltsOn).toBe('halts on the 1st failure');

    await bob.post(`/v1/rollouts/${id}/approve`);
    await alice.post(`/v1/rollouts/${id}/start`);
    const done = await waitForRolloutState(alice, id, ['succeeded', 'halted']);
    expect(done.rollout.state).toBe('succeeded');
    expect(done.waves.map((w) => w.phase)).toEqual(['passed', 'passed', 'passed']);

    for (const host of HOSTS) {
      const file = join(rootOf(host), PATH);
      const info = await stat(file);
      expect(await readFile(file, 'utf8')).toBe(NEW);
      expect(info.mode & 0o7777).toBe(0o600);
      expect([info.uid, info.gid]).toEqual([65534, 65534]);
      expect((await readdir(join(rootOf(host), 'etc/app'))).sort()).toEqual(['app.conf']); // no temp files
    }

    // Waves really were sequential: each host's dispatch follows the previous wave passing.
    const { events } = await alice.get<EventPage>(`/v1/rollouts/${id}/events?limit=1000`);
    const order = events
      .filter((e) => e.type === 'host.dispatched' || e.type === 'wave.passed')
      .map((e) => (e.type === 'wave.passed' ? `passed:${e.data?.wave}` : `dispatch:${e.hostId}`));
    expect(order).toEqual(['dispatch:web-1', 'passed:0', 'dispatch:web-2', 'passed:1', 'dispatch:web-3', 'passed:2']);

    await alice.post(`/v1/rollouts/${id}/revert`);
    const reverted = await waitForRolloutState(alice, id, ['reverted', 'revert_failed']);
    expect(reverted.rollout.state).toBe('reverted');
    for (const host of HOSTS) {
      const file = join(rootOf(host), PATH);
      const info = await stat(file);
      expect(await readFile(file, 'utf8')).toBe(OLD);
      expect(info.mode & 0o7777, `${host}: mode`).toBe(OLD_MODE);
      expect([info.uid, info.gid], `${host}: owner`).toEqual([OLD_OWNER.uid, OLD_OWNER.gid]);
    }
    expect(reverted.waves.flatMap((w) => w.hosts.map((h) => h.state))).toEqual(['reverted', 'reverted', 'reverted']);
  });

  it('creates a file that did not exist, and revert removes it again', async () => {
    const patch = await alice.post<Patch>(
      '/v1/patches',
      patchBody({
        path: '/etc/app/extra.conf',
        content: 'x=1\n',
        mode: '0644',
        owner: 'root',
        group: 'root',
        expectedPriorSha256: 'absent',
      }),
    );
    const id = await launch(patch, { target: { hostIds: ['web-2', 'web-3'] }, waves: ['100%'] });
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

describeNeeding([root], 'the failure budget', () => {
  it('halts on the first failure with maxFailures 0 and never touches the next waves', async () => {
    await resetFiles();
    // web-1 (the canary) cannot be written: its directory is group-writable, which the agent refuses.
    await chmod(join(rootOf('web-1'), 'etc/app'), 0o775);
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const id = await launch(patch, { waves: [1, '50%', '100%'], maxFailures: 0 });
    const halted = await waitForRolloutState(alice, id, ['halted', 'succeeded']);
    expect(halted.rollout.state).toBe('halted');
    expect(halted.rollout.stateReason).toMatch(/failure budget exceeded: 1 failed, 0 tolerated/);
    const canary = halted.waves[0]?.hosts[0];
    expect(canary).toMatchObject({ hostId: 'web-1', state: 'failed', changed: false, errorCode: 'policy_denied' });
    expect(halted.waves[1]?.hosts[0]?.state).toBe('queued');
    expect(halted.waves[2]?.hosts[0]?.state).toBe('queued');
    for (const host of HOSTS) expect(await readFile(join(rootOf(host), PATH), 'utf8')).toBe(OLD);
    const { events } = await alice.get<EventPage>(`/v1/rollouts/${id}/events?limit=1000`);
    expect(events.filter((e) => e.type === 'host.dispatched').map((e) => e.hostId)).toEqual(['web-1']);
  });

  it('carries on while failures stay within the budget', async () => {
    await resetFiles();
    await chmod(join(rootOf('web-1'), 'etc/app'), 0o775);
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const id = await launch(patch, { waves: [1, '100%'], maxFailures: 1 });
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
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const id = await launch(patch, { target: { hostIds: ['web-1'] }, waves: [1] });
    const halted = await waitForRolloutState(alice, id, ['halted', 'succeeded']);
    expect(halted.waves[0]?.hosts[0]).toMatchObject({ state: 'failed', errorCode: 'precondition_failed' });
    expect(halted.waves[0]?.hosts[0]?.reason).toMatch(/drift/);
    expect(await readFile(join(rootOf('web-1'), PATH), 'utf8')).toBe('edited by hand\n');
  });
});

describeNeeding([root], 'dry run', () => {
  it('asks every target what it would do, and changes nothing', async () => {
    await resetFiles();
    await writeFile(join(rootOf('web-1'), PATH), 'edited by hand\n');
    await writeFile(join(rootOf('web-2'), PATH), NEW, { mode: 0o600 });
    await chmod(join(rootOf('web-2'), PATH), 0o600);
    await chown(join(rootOf('web-2'), PATH), 65534, 65534);
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const created = await alice.post<RolloutStatus>('/v1/rollouts', sampleRollout(patch.id));
    const dry = await alice.post<PreflightResult>(`/v1/rollouts/${created.rollout.id}/preflight`, {
      timeoutSeconds: 10,
    });
    const byHost = Object.fromEntries(dry.results.map((r) => [r.hostId, r.outcome]));
    expect(byHost).toEqual({ 'web-1': 'would_fail', 'web-2': 'already_applied', 'web-3': 'would_apply' });
    expect(dry.results.find((r) => r.hostId === 'web-1')?.reason).toMatch(/drift/);
    expect(await readFile(join(rootOf('web-1'), PATH), 'utf8')).toBe('edited by hand\n');
    expect(await readFile(join(rootOf('web-3'), PATH), 'utf8')).toBe(OLD);
    expect((await alice.get<RolloutStatus>(`/v1/rollouts/${created.rollout.id}`)).rollout.state).toBe(
      'awaiting_approval',
    );
  });
});

describe('a dry run with health checks', () => {
  it('answers would_fail for a host unhealthy before the patch, with the health results that say so, and changes nothing', async () => {
    await resetFiles();
    // The patch's check looks for /etc/app/ready: there on web-1 and web-3, missing on web-2.
    for (const host of ['web-1', 'web-3']) await writeFile(join(rootOf(host), '/etc/app/ready'), 'ok\n');
    await rm(join(rootOf('web-2'), '/etc/app/ready'), { force: true });
    const health = { checks: [{ kind: 'file' as const, name: 'app-ready', path: '/etc/app/ready' }] };
    const patch = await alice.post<Patch>('/v1/patches', patchBody({ health }));
    const created = await alice.post<RolloutStatus>('/v1/rollouts', sampleRollout(patch.id));
    const dry = await alice.post<PreflightResult>(`/v1/rollouts/${created.rollout.id}/preflight`, {
      timeoutSeconds: 10,
    });
    const byHost = Object.fromEntries(dry.results.map((r) => [r.hostId, r]));
    expect(Object.fromEntries(dry.results.map((r) => [r.hostId, r.outcome]))).toEqual({
      'web-1': 'would_apply',
      'web-2': 'would_fail',
      'web-3': 'would_apply',
    });
    expect(byHost['web-2']).toMatchObject({
      errorCode: 'health_failed',
      reason: expect.stringMatching(/unhealthy before patch/),
      health: [{ check: 'app-ready', kind: 'file', ok: false, observed: '/etc/app/ready does not exist' }],
    });
    expect(byHost['web-1']?.health).toBeUndefined();
    for (const host of HOSTS) expect(await readFile(join(rootOf(host), PATH), 'utf8')).toBe(OLD);
  });
});

describe('bad input is refused and changes nothing', () => {
  it('answers 400 naming the failing fields, and stores nothing', async () => {
    const before = (await alice.get<PatchList>('/v1/patches?limit=500')).patches.length;
    const res = await alice.raw('POST', '/v1/patches', {
      ...patchBody(),
      problem: '',
      change: { kind: 'file', path: 'etc/../passwd', content: 'x', mode: '999', owner: 'root', group: 'root' },
    });
    expect(res.status).toBe(400);
    const body = await errorBody(res);
    expect(body.error.code).toBe('validation_failed');
    const paths = issuePaths(body);
    expect(paths).toEqual(expect.arrayContaining(['body.problem', 'body.change.path', 'body.change.mode']));
    expect((await alice.get<PatchList>('/v1/patches?limit=500')).patches.length).toBe(before);
  });

  it('refuses malformed JSON, unknown fields and bad wave steps', async () => {
    const broken = await alice.raw('POST', '/v1/patches', '{"title":');
    expect(broken.status).toBe(400);
    const unknown = await alice.raw('POST', '/v1/patches', { ...patchBody(), extra: true });
    expect(unknown.status).toBe(400);
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const waves = await alice.raw('POST', '/v1/rollouts', { ...sampleRollout(patch.id), waves: [0, '-5%'] });
    expect(waves.status).toBe(400);
    const paths = issuePaths(await errorBody(waves));
    expect(paths.some((p) => p.startsWith('body.waves'))).toBe(true);
    const noTarget = await alice.raw('POST', '/v1/rollouts', { patchId: patch.id, target: {} });
    expect(noTarget.status).toBe(400);
    const ghost = await alice.raw('POST', '/v1/rollouts', { patchId: patch.id, target: { hostIds: ['nope-1'] } });
    expect(ghost.status).toBe(400);
    expect((await errorBody(ghost)).error.message).toMatch(/unknown host ids: nope-1/);
  });

  it('refuses callers without a valid token or the right role', async () => {
    expect((await apiClient(fleet.coordinator.url, 'wrong-token-000000').raw('GET', '/v1/agents')).status).toBe(401);
    expect((await bob.raw('POST', '/v1/patches', patchBody())).status).toBe(403);
    const patch = await alice.post<Patch>('/v1/patches', patchBody());
    const created = await alice.post<RolloutStatus>('/v1/rollouts', sampleRollout(patch.id));
    // An operator has no right to approve at all: refused for the role, whoever created the rollout.
    const operator = await alice.raw('POST', `/v1/rollouts/${created.rollout.id}/approve`, {});
    expect(operator.status).toBe(403);
    expect((await errorBody(operator)).error.message).toBe('alice (operator) may not approve');
    const early = await alice.raw('POST', `/v1/rollouts/${created.rollout.id}/start`, {});
    expect(early.status).toBe(409);
    expect((await errorBody(early)).error.details?.state).toBe('awaiting_approval');
  });

  it('four eyes: whoever created a rollout cannot approve it, even holding the right to approve', async () => {
    // The admin may both write and approve: only the four-eyes rule stands between it and its own approval.
    const patch = await admin.post<Patch>('/v1/patches', patchBody());
    const created = await admin.post<RolloutStatus>('/v1/rollouts', sampleRollout(patch.id));
    const id = created.rollout.id;
    const self = await admin.raw('POST', `/v1/rollouts/${id}/approve`, {});
    expect(self.status).toBe(403);
    const refused = await errorBody(self);
    expect(refused.error.code).toBe('forbidden');
    expect(refused.error.message).toMatch(/^four eyes: /);
    expect(refused.error.details).toMatchObject({ rolloutId: id, createdBy: 'admin' });
    expect((await admin.get<RolloutStatus>(`/v1/rollouts/${id}`)).rollout.state).toBe('awaiting_approval');
    // A second person with the right is all it takes.
    await bob.post(`/v1/rollouts/${id}/approve`);
    expect((await admin.get<RolloutStatus>(`/v1/rollouts/${id}`)).rollout.state).toBe('scheduled');
  });

  it('closes a socket that cannot prove it is an enrolled agent with 4401, records nothing, and leaves the real agent alone', async () => {
    const ids = async () => (await admin.get<AgentList>('/v1/agents')).agents.map((a) => a.id);
    const before = await ids();
    const anonymous = new WebSocket(agentSocketUrl(fleet.coordinator.url));
    expect(await closeCode(anonymous)).toBe(4401);
    // A stranger's key for a live host, and a made-up host: both refused after the challenge.
    const impostor = { hostId: 'web-1', ...freshKey() };
    const ghost = { hostId: 'ghost-1', ...freshKey() };
    for (const identity of [impostor, ghost]) {
      const socket = openAgentSocket(fleet.coordinator.url, identity.hostId);
      const closed = closeCode(socket);
      const { nonce } = await nextFrame<{ type: 'challenge'; nonce: string }>(socket, 'challenge');
      socket.send(JSON.stringify(signedHello(identity, nonce)));
      expect(await closed).toBe(4401);
    }
    expect(await ids()).toEqual(before);
    expect((await admin.get<AgentDetail>('/v1/agents/web-1')).agent.online).toBe(true);
  });

  it('closes an agent that sends a frame over the size limit with 1009 and stays up', async () => {
    const identity = await enrollIdentity(fleet.coordinator.url, admin, 'big-frame-1');
    const socket = await connectAs(fleet.coordinator.url, identity);
    const closed = closeCode(socket);
    socket.send('x'.repeat(5 * 1024 * 1024));
    expect(await closed).toBe(1009);
    expect((await fetch(`${fleet.coordinator.url}/healthz`)).status).toBe(200);
  });

  it('closes an agent that sends a malformed frame with 4400 and stays up', async () => {
    const identity = await enrollIdentity(fleet.coordinator.url, admin, 'bad-frame-1');
    const socket = openAgentSocket(fleet.coordinator.url, identity.hostId);
    const closed = closeCode(socket);
    await nextFrame(socket, 'challenge');
    socket.send(JSON.stringify({ type: 'hello', protocolVersion: 'one' }));
    expect(await closed).toBe(4400);
    expect((await fetch(`${fleet.coordinator.url}/healthz`)).status).toBe(200);
  });
});

function freshKey() {
  const pair = generateAgentKeyPair();
  return { publicKey: pair.publicKey, privateKey: loadPrivateKey(pair.privateKeyPem) };
}

describe('the fleet and its audit trail', () => {
  // It reads the history the rollouts above left, the revert among them.
  itNeeding([root], "shows one host's history across rollouts", async () => {
    const detail = await alice.get<AgentDetail>('/v1/agents/web-2');
    expect(detail.agent).toMatchObject({ id: 'web-2', online: true });
    expect(detail.hostRuns.length).toBeGreaterThan(0);
    expect(detail.hostRuns.some((r) => r.state === 'reverted')).toBe(true);
    expect((await alice.raw('GET', '/v1/agents/nope-9')).status).toBe(404);
  });

  it('pages every event: join tokens issued, agents enrolled, patches created, rollouts', async () => {
    const first = await alice.get<EventPage>('/v1/events?limit=5');
    expect(first.events).toHaveLength(5);
    expect(first.events[0]).toMatchObject({ type: 'join_token.created', actor: 'admin', hostId: 'web-1' });
    const all = await alice.get<EventPage>(`/v1/events?after=0&limit=1000`);
    const types = new Set(all.events.map((e) => e.type));
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
    const old = await enrollIdentity(fleet.coordinator.url, admin, 'rotate-1');
    const socket = await connectAs(fleet.coordinator.url, old);
    const closed = closeCode(socket);
    expect((await alice.raw('POST', '/v1/agents/rotate-1/revoke', {})).status).toBe(403);
    const revoked = await admin.post<AgentView>('/v1/agents/rotate-1/revoke');
    expect(revoked.revokedAt).not.toBeNull();
    expect(await closed).toBe(4401);
    await expect(connectAs(fleet.coordinator.url, old)).rejects.toThrow(/closed \(4401\)/);
    // A plain join token cannot take an enrolled (or revoked) host id; one made for it with replace can.
    await expect(enrollIdentity(fleet.coordinator.url, admin, 'rotate-1')).rejects.toThrow(/HTTP 409/);
    const { token } = await admin.post<JoinTokenCreated>('/v1/join-tokens', { hostId: 'rotate-1', replace: true });
    const fresh = await enrollWith(fleet.coordinator.url, token, 'rotate-1');
    const renewed = await connectAs(fleet.coordinator.url, fresh);
    await expect(connectAs(fleet.coordinator.url, old)).rejects.toThrow(/closed \(4401\)/);
    const events = await alice.get<EventPage>('/v1/events?limit=1000');
    const types = events.events.filter((e) => e.hostId === 'rotate-1').map((e) => e.type);
    expect(types).toEqual(
      expect.arrayContaining(['agent.enrolled', 'agent.revoked', 'agent.enroll_refused', 'agent.reenrolled']),
    );
    renewed.close();
  });
});

describeNeeding([root], 'stopping an agent', () => {
  it('drains on SIGTERM: the running order finishes and reports before the agent exits', async () => {
    await resetFiles();
    const patch = await alice.post<Patch>(
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
    const id = await launch(patch, { target: { hostIds: ['web-3'] }, waves: [1] });
    await waitFor(
      'web-3 to be verifying',
      async () => (await alice.get<RolloutStatus>(`/v1/rollouts/${id}`)).waves[0]?.hosts[0]?.state === 'verifying',
    );
    const agent = agents.get('web-3');
    if (!agent) throw new Error('web-3 has no agent');
    agent.child.kill('SIGTERM');
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    const done = await waitForRolloutState(alice, id, ['succeeded', 'halted']);
    expect(done.waves[0]?.hosts[0]).toMatchObject({ hostId: 'web-3', state: 'healthy', changed: true });
    expect(await readFile(join(rootOf('web-3'), PATH), 'utf8')).toBe(NEW);
    // Its key is in its data dir: a restart needs no join token.
    agents.set('web-3', fleet.spawnAgent(agentOf('web-3')));
    await fleet.waitOnline(['web-3']);
  });
});

describe('agents reconnect', () => {
  it('come back by themselves when the coordinator restarts', async () => {
    const before = fleet.coordinator.child.pid;
    const restartedAt = Date.now();
    await fleet.restart();
    await fleet.waitOnline(HOSTS, 30_000);
    await waitFor(
      'healthz to count three agents',
      async () => (await admin.get<Healthz>('/healthz')).agentsOnline >= 3,
    );
    // A new process, which each host said hello to on its own (the agents were never restarted).
    expect(fleet.coordinator.child.pid).not.toBe(before);
    for (const host of HOSTS) {
      const { agent } = await admin.get<AgentDetail>(`/v1/agents/${host}`);
      expect(agent.online, host).toBe(true);
      expect(Date.parse(agent.lastSeenAt ?? ''), host).toBeGreaterThanOrEqual(restartedAt);
    }
  });
});
