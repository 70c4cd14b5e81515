/**
 * A hostile (enrolled) agent whose reports carry a NUL character: valid JSON, within every schema,
 * but PostgreSQL text and jsonb cannot hold it. Its batch of reports failed and was retried for ever,
 * and every other agent's reports with it. Now the NUL is U+FFFD before anything reads the frame, on
 * both stores alike, and the honest agent's hello is recorded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { postgresCluster } from '../../../test/support/postgres-cluster.js';
import { connectAsAgent, type RawPeer, sampleHello } from '../../../test/support/raw-agent-socket.js';
import { itNeeding } from '../../../test/support/requirements.js';
import { enrollAgent } from './support/enroll-agent.js';
import { createFleetDatabase } from './support/simulated-fleet.js';
import { startTestCoordinator, type TestCoordinator, TOKENS } from './support/test-coordinator.js';

let coordinator: TestCoordinator | undefined;
const peers: RawPeer[] = [];
afterEach(async () => {
  for (const peer of peers.splice(0)) peer.destroy();
  await coordinator?.close();
  coordinator = undefined;
});

/** One hostile agent and one honest one on a coordinator over `store`. */
async function hostileAndHonest(store: Record<string, unknown>): Promise<void> {
  coordinator = await startTestCoordinator({ ...store, host: '127.0.0.1', port: 0 });
  const { app } = coordinator;
  await app.listen({ host: '127.0.0.1', port: 0 });
  const port = (app.server.address() as { port: number }).port;
  const evil = await enrollAgent(app, TOKENS.admin, 'evil-1');
  const good = await enrollAgent(app, TOKENS.admin, 'good-1');

  const facts = { ...(sampleHello().facts as object), kernel: '6.1\u0000' };
  const bad = await connectAsAgent(port, 'evil-1', evil.privateKey, { hello: { ...sampleHello('x\u0000y'), facts } });
  peers.push(bad.peer);
  expect(bad.welcomed).toBe(true);
  const honest = await connectAsAgent(port, 'good-1', good.privateKey, { hello: sampleHello('honest-1.0') });
  peers.push(honest.peer);
  expect(honest.welcomed).toBe(true);

  await expect.poll(async () => (await app.fleet.store.agents.get('good-1'))?.agentVersion).toBe('honest-1.0');
  const stored = await app.fleet.store.agents.get('evil-1');
  expect(stored?.agentVersion).toBe('x\uFFFDy');
  expect(stored?.facts).toMatchObject({ kernel: '6.1\uFFFD' });
  const retries = coordinator.logLines.filter((l) => l.msg === 'recording agent reports failed; retrying in 1s');
  expect(retries).toEqual([]);
}

describe('a NUL in an agent report', () => {
  it('on SQLite: is kept as U+FFFD', async () => {
    await hostileAndHonest({});
  });

  itNeeding(
    postgresCluster,
    "on PostgreSQL: is kept as U+FFFD, and does not stop the other agents' reports from being recorded",
    async () => {
      await hostileAndHonest({ store: { kind: 'postgres', url: await createFleetDatabase() } });
    },
    30_000,
  );
});
