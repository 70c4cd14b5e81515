/**
 * Two coordinators of a group on a real PostgreSQL 15, an agent connected to the second: a key revoked,
 * or replaced by a re-enrollment, at the first must not keep its live session at the second. Real
 * sockets on 127.0.0.1; the second coordinator learns of the change from the events it tails.
 */
import {
  CloseCode,
  enrollProofPayload,
  generateLoadedAgentKeyPair,
  JoinTokenCreatedSchema,
  signPayload,
} from '@fleetpatch/shared';
import { afterEach, expect, it } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { connectAsAgent, type RawPeer } from '../../../test/support/raw-agent-socket.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { enrollAgent } from './support/enroll-agent.js';
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
    const a = await startTestCoordinator({ store: { kind: 'postgres', url, coordinatorId: 'c-a' } });
    coordinators.push(a);
    const b = await startTestCoordinator({ store: { kind: 'postgres', url, coordinatorId: 'c-b' } });
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
