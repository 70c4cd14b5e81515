/**
 * Two coordinators of a group on a real PostgreSQL 15. An agent connected to the second: a key revoked,
 * or replaced by a re-enrollment, at the first must not keep its live session at the second (real
 * sockets on 127.0.0.1; the second learns of the change from the events it tails). And a host that a
 * rollout start at one is taking cannot be removed at the other meanwhile.
 */
import {
  CloseCode,
  enrollProofPayload,
  generateLoadedAgentKeyPair,
  JoinTokenCreatedSchema,
  type RolloutStatus,
  signPayload,
} from '@fleetpatch/shared';
import { afterEach, expect, it, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { connectAsAgent, type RawPeer } from '../../../test/support/raw-agent-socket.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { enrollAgent } from './support/enroll-agent.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { callApi, startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

describeNeeding(postgresCluster, 'credentials in a coordinator group', () => {
  const coordinators: TestCoordinator[] = [];
  const peers: RawPeer[] = [];
  afterEach(async () => {
    for (const peer of peers.splice(0)) peer.destroy();
    for (const coordinator of coordinators.splice(0)) await coordinator.close();
  });

  /** Coordinators `c-a` and `c-b` on one fresh database; `c-b` listens for agents. */
  async function group() {
    const url = await runPostgresCluster().createDatabase();
    const a = await startTestCoordinator({ store: { kind: 'postgres', url, coordinatorId: 'c-a' }, minApprovals: 0 });
    coordinators.push(a);
    const b = await startTestCoordinator({ store: { kind: 'postgres', url, coordinatorId: 'c-b' }, minApprovals: 0 });
    coordinators.push(b);
    await b.app.listen({ host: '127.0.0.1', port: 0 });
    return { a, b, bPort: (b.app.server.address() as { port: number }).port };
  }

  it('cuts at the other coordinator the session of a key revoked at one', async () => {
    const { a, b, bPort } = await group();
    const { privateKey } = await enrollAgent(a.app, TOKENS.admin, 'web-1');
    const agent = await connectAsAgent(bPort, 'web-1', privateKey);
    peers.push(agent.peer);
    expect(agent.welcomed).toBe(true);
    expect((await callApi(a.app, 'POST', '/v1/agents/web-1/revoke')).status).toBe(200);
    expect(await agent.peer.waitClose(10_000)).toBe(CloseCode.unauthorized);
    expect(b.app.fleet.hub.isOnline('web-1')).toBe(false);
    // And the key gets in nowhere.
    expect((await connectAsAgent(bPort, 'web-1', privateKey)).closeCode).toBe(CloseCode.unauthorized);
  });

  it('cuts the old key of a host re-enrolled at the other coordinator, and lets the new key in', async () => {
    const { a, bPort } = await group();
    const old = await enrollAgent(a.app, TOKENS.admin, 'web-2');
    const agent = await connectAsAgent(bPort, 'web-2', old.privateKey);
    peers.push(agent.peer);
    expect(agent.welcomed).toBe(true);
    const issued = await callApi(a.app, 'POST', '/v1/join-tokens', { hostId: 'web-2', replace: true });
    const { token } = JoinTokenCreatedSchema.parse(issued.body);
    const renewed = await enrollWith(a, token, 'web-2');
    expect(await agent.peer.waitClose(10_000)).toBe(CloseCode.unauthorized);
    const again = await connectAsAgent(bPort, 'web-2', renewed);
    peers.push(again.peer);
    expect(again.welcomed).toBe(true);
  });

  it('removes no host that a rollout start at the other coordinator is taking meanwhile', async () => {
    const { a, b } = await group();
    await enrollAgent(a.app, TOKENS.admin, 'web-3');
    const patch = await callApi(a.app, 'POST', '/v1/patches', SAMPLE_PATCH_SPEC);
    const created = await callApi(a.app, 'POST', '/v1/rollouts', {
      patchId: (patch.body as { id: string }).id,
      target: { hostIds: ['web-3'] },
      requiredApprovals: 0,
    });
    const rolloutId = (created.body as RolloutStatus).rollout.id;
    // The start at c-a has read its target (web-3, in the fleet) and is writing its host runs: held there.
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const insert = a.app.fleet.store.hostRuns.insertQueued.bind(a.app.fleet.store.hostRuns);
    const held = vi.spyOn(a.app.fleet.store.hostRuns, 'insertQueued').mockImplementationOnce(async (...args) => {
      await released;
      return insert(...args);
    });
    const started = callApi(a.app, 'POST', `/v1/rollouts/${rolloutId}/start`);
    await vi.waitFor(() => expect(held).toHaveBeenCalled());
    // Meanwhile the host is removed at c-b. Were the removal not an engine step, it would read no
    // rollout holding web-3 and be done well within this window (a few queries), the start still held.
    const removal = b.app.inject({
      method: 'DELETE',
      url: '/v1/agents/web-3',
      headers: { authorization: `Bearer ${TOKENS.admin}` },
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    release();
    expect(((await started).body as RolloutStatus).rollout.state).toBe('running');
    const removed = await removal;
    expect(removed.statusCode, removed.body).toBe(409);
    expect(removed.json().error.message).toMatch(/has work in active rollout/);
    expect(await b.app.fleet.store.agents.get('web-3')).toMatchObject({ removedAt: null, revokedAt: null });
  });
});

/** Enrolls `hostId` with `token` and a new key through the API; returns the key. */
async function enrollWith(coordinator: TestCoordinator, token: string, hostId: string) {
  const pair = generateLoadedAgentKeyPair();
  const res = await coordinator.app.inject({
    method: 'POST',
    url: '/v1/enroll',
    headers: { authorization: `Bearer ${token}` },
    payload: {
      hostId,
      publicKey: pair.publicKey,
      proof: signPayload(pair.privateKey, enrollProofPayload(hostId, pair.publicKey)),
    },
  });
  expect(res.statusCode, res.body).toBe(201);
  return pair.privateKey;
}
