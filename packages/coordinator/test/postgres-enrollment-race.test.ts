/**
 * Two coordinators of a group enroll two hosts with the last use of one join token, on a real
 * PostgreSQL 15. Their transactions are READ COMMITTED and not serialized with each other: both read
 * the token with its use left. The one that reads first is held after its read until the other has
 * enrolled and committed; its claim of the use then finds none, and it must refuse, not enroll a
 * second host on a one-use token.
 */
import { enrollProofPayload, generateLoadedAgentKeyPair, signPayload } from '@fleetpatch/shared';
import { afterAll, expect, it, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AgentEnrollment } from '../src/enrollment/agent-enrollment.js';
import { Store } from '../src/store/store.js';

function enrollRequest(hostId: string) {
  const pair = generateLoadedAgentKeyPair();
  return {
    hostId,
    publicKey: pair.publicKey,
    proof: signPayload(pair.privateKey, enrollProofPayload(hostId, pair.publicKey)),
  };
}

describeNeeding(postgresCluster, 'enrolling on PostgreSQL, two coordinators at once', () => {
  const stores: Store[] = [];
  afterAll(async () => {
    for (const store of stores) await store.close();
  });

  it('spends the last use of a join token once: the enrollment that read it first and claims it second is refused', async () => {
    const url = await runPostgresCluster().createDatabase();
    const [first, second] = [await Store.openPostgres(url), await Store.openPostgres(url)];
    stores.push(first, second);
    const [one, other] = [first, second].map((store) => new AgentEnrollment({ store, disconnect: () => {} }));
    const { token } = await (one as AgentEnrollment).createJoinToken(
      { uses: 1, expiresInSeconds: 3600, labels: { env: 'prod' }, replace: false },
      'alice',
    );

    // The first coordinator's enrollment reads the token (a use left), then waits here, after its read
    // and before its claim, until the second coordinator's enrollment is committed.
    let secondDone: () => void = () => {};
    const secondCommitted = new Promise<void>((resolve) => {
      secondDone = resolve;
    });
    const read = first.agents.get.bind(first.agents);
    const readThenWait = vi.spyOn(first.agents, 'get').mockImplementationOnce(async (id) => {
      await secondCommitted;
      return read(id);
    });
    const held = (one as AgentEnrollment).enroll(token, enrollRequest('web-1')).then(
      () => 'enrolled',
      (err: Error) => err.message,
    );
    await vi.waitFor(() => expect(readThenWait).toHaveBeenCalled());
    await expect((other as AgentEnrollment).enroll(token, enrollRequest('web-2'))).resolves.toMatchObject({
      hostId: 'web-2',
    });
    secondDone();
    expect(await held).toMatch(/join token \S+ is used_up/);

    expect(await second.agents.get('web-1')).toBeUndefined();
    expect(await second.agents.get('web-2')).toMatchObject({ id: 'web-2' });
    const enrolledEvents = (await second.allEvents(0, 100)).filter((e) => e.type === 'agent.enrolled');
    expect(enrolledEvents.map((e) => e.hostId)).toEqual(['web-2']);
  });
});
