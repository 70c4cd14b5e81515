/**
 * DELETE /v1/agents/:id takes a host out of the fleet: admin only; its credential is revoked, it is
 * left out of the agents list and of every target, its history stays; refused (409) while it has
 * work in an active rollout unless `?force=true`; enrolling it again needs a `replace` join token.
 */
import {
  type AgentList,
  AgentViewSchema,
  type ComplianceReport,
  type EventPage,
  enrollProofPayload,
  generateAgentKeyPair,
  inventoryDigest,
  loadPrivateKey,
  type PackageVersions,
  type RolloutStatus,
  signPayload,
} from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { enrollAgent } from './support/enroll-agent.js';
import { FIXED, opensslHost, VULNERABLE } from './support/sample-inventory.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

let coordinator: TestCoordinator;

beforeEach(async () => {
  coordinator = await startTestCoordinator({ minApprovals: 0 });
});

afterEach(async () => {
  await coordinator.close();
});

async function call(method: 'GET' | 'POST' | 'DELETE', url: string, token: string = TOKENS.admin, payload?: unknown) {
  const res = await coordinator.app.inject({
    method,
    url,
    headers: { authorization: `Bearer ${token}` },
    ...(payload === undefined ? {} : { payload: payload as Record<string, unknown> }),
  });
  return { status: res.statusCode, body: res.json() as Record<string, unknown> };
}

/** A running rollout over `web-1` (offline: its order waits for it). */
async function activeRollout(): Promise<string> {
  const patch = await call('POST', '/v1/patches', TOKENS.admin, SAMPLE_PATCH_SPEC);
  const created = await call('POST', '/v1/rollouts', TOKENS.admin, {
    patchId: patch.body.id,
    target: { hostIds: ['web-1'] },
    requiredApprovals: 0,
  });
  const id = (created.body as unknown as RolloutStatus).rollout.id;
  const started = await call('POST', `/v1/rollouts/${id}/start`);
  expect((started.body as unknown as RolloutStatus).rollout.state).toBe('running');
  return id;
}

describe('DELETE /v1/agents/:id', () => {
  it('is for admins only', async () => {
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    for (const token of [TOKENS.operator, TOKENS.approver, TOKENS.viewer]) {
      const refused = await call('DELETE', '/v1/agents/web-1', token);
      expect(refused.status).toBe(403);
      expect((refused.body.error as { message: string }).message).toMatch(/\) may not do this: it is for admins$/);
    }
    expect((await coordinator.app.fleet.store.agents.get('web-1'))?.removedAt).toBeNull();
  });

  it('revokes the credential, leaves the host out of the list and of targets, and keeps its history', async () => {
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-2');
    const removed = await call('DELETE', '/v1/agents/web-1');
    expect(removed.status).toBe(200);
    expect(AgentViewSchema.parse(removed.body)).toMatchObject({
      id: 'web-1',
      removedAt: expect.any(String),
      revokedAt: expect.any(String),
      online: false,
    });
    expect(await coordinator.app.fleet.store.agents.publicKeyOf('web-1')).toBeUndefined();
    const listed = (await call('GET', '/v1/agents')).body as unknown as AgentList;
    expect(listed.agents.map((a) => a.id)).toEqual(['web-2']);
    const all = (await call('GET', '/v1/agents?removed=true')).body as unknown as AgentList;
    expect(all.agents.map((a) => a.id)).toEqual(['web-1', 'web-2']);
    expect((await call('GET', '/v1/agents/web-1')).status).toBe(200);

    const patch = await call('POST', '/v1/patches', TOKENS.admin, SAMPLE_PATCH_SPEC);
    const created = await call('POST', '/v1/rollouts', TOKENS.admin, {
      patchId: patch.body.id,
      target: { all: true },
      requiredApprovals: 0,
    });
    const id = (created.body as unknown as RolloutStatus).rollout.id;
    const plan = await call('GET', `/v1/rollouts/${id}/plan`);
    expect(plan.body.waves).toEqual([{ wave: 0, hosts: ['web-2'] }]);

    const { events } = (await call('GET', '/v1/events?limit=100')).body as unknown as EventPage;
    expect(
      events.filter((e) => e.hostId === 'web-1' && e.type.startsWith('agent.')).map((e) => [e.type, e.actor, e.data]),
    ).toEqual([
      ['agent.enrolled', expect.any(String), expect.any(Object)],
      ['agent.removed', 'alice', {}],
    ]);
  });

  it('leaves compliance and the package counts: a decommissioned host is not exposed for ever', async () => {
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-2');
    const { inventory } = coordinator.app.fleet.store;
    const at = new Date().toISOString();
    await inventory.replace('web-1', opensslHost(VULNERABLE), inventoryDigest(opensslHost(VULNERABLE)), at);
    await inventory.replace('web-2', opensslHost(FIXED), inventoryDigest(opensslHost(FIXED)), at);
    const compliance = async () =>
      (await call('GET', `/v1/compliance?source=openssl&fixed=${encodeURIComponent(FIXED)}`))
        .body as unknown as ComplianceReport;
    const versions = async () => (await call('GET', '/v1/packages?source=openssl')).body as unknown as PackageVersions;
    expect((await compliance()).hosts.map((h) => h.hostId)).toEqual(['web-1', 'web-2']);
    expect((await versions()).versions.filter((v) => v.version === VULNERABLE).map((v) => v.hosts)).toEqual([1, 1]);

    expect((await call('DELETE', '/v1/agents/web-1')).status).toBe(200);
    const after = await compliance();
    expect(after.hosts.map((h) => h.hostId)).toEqual(['web-2']);
    expect(Object.values(after.counts).reduce((a, b) => a + b, 0)).toBe(1);
    const left = await versions();
    expect(left.versions.map((v) => v.version)).toEqual([FIXED, FIXED]);
    expect(left.hostsWithInventory).toBe(1);
    expect(await inventory.get('web-1')).toBeUndefined();
    expect(await inventory.packagesOf('web-1')).toEqual([]);
    // The other host's inventory is untouched.
    expect(await inventory.packagesOf('web-2')).toHaveLength(4);
  });

  it('answers 404 for an unknown host and 409 for one already removed, changing nothing', async () => {
    expect((await call('DELETE', '/v1/agents/nobody')).status).toBe(404);
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    expect((await call('DELETE', '/v1/agents/web-1')).status).toBe(200);
    const again = await call('DELETE', '/v1/agents/web-1');
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ error: { message: 'agent web-1 is already removed' } });
  });

  it('refuses a bad query with 400 naming the field', async () => {
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    const res = await call('DELETE', '/v1/agents/web-1?force=yes');
    expect(res.status).toBe(400);
    expect(JSON.stringify(res.body)).toContain('force');
    expect((await coordinator.app.fleet.store.agents.get('web-1'))?.removedAt).toBeNull();
  });

  it('is refused while the host has work in an active rollout, unless forced', async () => {
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    const rolloutId = await activeRollout();
    const refused = await call('DELETE', '/v1/agents/web-1');
    expect(refused.status).toBe(409);
    expect(refused.body).toMatchObject({
      error: {
        message: `agent web-1 has work in active rollout(s) ${rolloutId}: let them finish, or remove it with force`,
        details: { rollouts: [rolloutId] },
      },
    });
    expect(await coordinator.app.fleet.store.agents.get('web-1')).toMatchObject({ removedAt: null, revokedAt: null });

    const forced = await call('DELETE', '/v1/agents/web-1?force=true');
    expect(forced.status).toBe(200);
    const { events } = (await call('GET', '/v1/events?limit=100')).body as unknown as EventPage;
    expect(events.find((e) => e.type === 'agent.removed')?.data).toEqual({
      forced: true,
      activeRollouts: [rolloutId],
    });
  });

  it('a host enrolled again with a replace join token is back in the fleet; without one it is refused', async () => {
    await enrollAgent(coordinator.app, TOKENS.admin, 'web-1');
    await call('DELETE', '/v1/agents/web-1');
    // enrollAgent issues a join token without replace: refused for a host that held a key.
    await expect(enrollAgent(coordinator.app, TOKENS.admin, 'web-1')).rejects.toThrow(/already enrolled/);
    expect((await coordinator.app.fleet.store.agents.get('web-1'))?.removedAt).not.toBeNull();

    const issued = await call('POST', '/v1/join-tokens', TOKENS.admin, { hostId: 'web-1', replace: true });
    const pair = generateAgentKeyPair();
    const enrolled = await coordinator.app.inject({
      method: 'POST',
      url: '/v1/enroll',
      headers: { authorization: `Bearer ${issued.body.token as string}` },
      payload: {
        hostId: 'web-1',
        publicKey: pair.publicKey,
        proof: signPayload(loadPrivateKey(pair.privateKeyPem), enrollProofPayload('web-1', pair.publicKey)),
      },
    });
    expect(enrolled.statusCode).toBe(201);
    expect(await coordinator.app.fleet.store.agents.get('web-1')).toMatchObject({ removedAt: null, revokedAt: null });
    const listed = (await call('GET', '/v1/agents')).body as unknown as AgentList;
    expect(listed.agents.map((a) => a.id)).toEqual(['web-1']);
  });
});
