/**
 * Two coordinators of a group enrolling at once, on a real PostgreSQL 15. Their transactions are READ
 * COMMITTED and not serialized with each other, so what one read can be out of date by the time it
 * writes. Each case holds the first coordinator's enrollment after some of its reads, lets the second
 * coordinator act and commit, and then lets the first one go on: its writes must go by what is
 * committed, not by what it read.
 */
import { type EnrollRequest, enrollProofPayload, generateLoadedAgentKeyPair, signPayload } from '@fleetpatch/shared';
import { afterAll, expect, it, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AgentEnrollment } from '../src/enrollment/agent-enrollment.js';
import { Store } from '../src/store/store.js';

function enrollRequest(hostId: string): EnrollRequest {
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

  /** Two coordinators on one fresh database, and a join token made by the first. */
  async function group(uses: number) {
    const url = await runPostgresCluster().createDatabase();
    const [first, second] = [await Store.openPostgres(url), await Store.openPostgres(url)];
    stores.push(first, second);
    const [one, other] = [first, second].map((store) => new AgentEnrollment({ store, disconnect: () => {} }));
    const created = await (one as AgentEnrollment).createJoinToken(
      { uses, expiresInSeconds: 3600, labels: { env: 'prod' }, replace: false },
      'alice',
    );
    return { first, second, one: one as AgentEnrollment, other: other as AgentEnrollment, created };
  }

  /**
   * Starts `enroll` on the first coordinator and holds it at `at` — its read of the host (it has read
   * the token), or its claim of a use (it has read the token and found no host) — until `meanwhile`,
   * the second coordinator's doing, has committed; resolves with the enrollment's outcome.
   */
  async function heldWhile(
    first: Store,
    at: 'reading the host' | 'claiming a use',
    enroll: () => Promise<unknown>,
    meanwhile: () => Promise<unknown>,
  ): Promise<string> {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const hold =
      <A extends unknown[], R>(call: (...args: A) => Promise<R>) =>
      async (...args: A) => {
        await released;
        return call(...args);
      };
    const held =
      at === 'reading the host'
        ? vi.spyOn(first.agents, 'get').mockImplementationOnce(hold(first.agents.get.bind(first.agents)))
        : vi.spyOn(first.joinTokens, 'use').mockImplementationOnce(hold(first.joinTokens.use.bind(first.joinTokens)));
    const outcome = enroll().then(
      (result) => JSON.stringify(result),
      (err: Error) => err.message,
    );
    await vi.waitFor(() => expect(held).toHaveBeenCalled());
    await meanwhile();
    release();
    return outcome;
  }

  it('spends the last use of a join token once: the enrollment that read it first and claims it second is refused', async () => {
    const { first, second, one, other, created } = await group(1);
    const outcome = await heldWhile(
      first,
      'reading the host',
      () => one.enroll(created.token, enrollRequest('web-1')),
      () => other.enroll(created.token, enrollRequest('web-2')),
    );
    expect(outcome).toMatch(/join token \S+ is used_up/);
    expect(await second.agents.get('web-1')).toBeUndefined();
    expect(await second.agents.get('web-2')).toMatchObject({ id: 'web-2' });
    const enrolled = (await second.allEvents(0, 100)).filter((e) => e.type === 'agent.enrolled');
    expect(enrolled.map((e) => e.hostId)).toEqual(['web-2']);
  });

  it('enrolls nothing with a join token revoked after the enrollment read it', async () => {
    const { first, second, one, other, created } = await group(5);
    const outcome = await heldWhile(
      first,
      'reading the host',
      () => one.enroll(created.token, enrollRequest('web-1')),
      () => other.revokeJoinToken(created.id, 'bob'),
    );
    expect(outcome).toMatch(/join token \S+ is revoked/);
    expect(await second.agents.get('web-1')).toBeUndefined();
    expect((await second.joinTokens.get(created.id))?.uses).toBe(0);
  });

  it('does not hand a host enrolled meanwhile to a second key: refused, the use given back, the first key kept', async () => {
    const { first, second, one, other, created } = await group(5);
    const winner = enrollRequest('web-1');
    const outcome = await heldWhile(
      first,
      'claiming a use',
      () => one.enroll(created.token, enrollRequest('web-1')),
      () => other.enroll(created.token, winner),
    );
    expect(outcome).toMatch(/host web-1 is already enrolled/);
    expect(await second.agents.publicKeyOf('web-1')).toBe(winner.publicKey);
    expect((await second.joinTokens.get(created.id))?.uses).toBe(1);
    const enrolled = (await second.allEvents(0, 100)).filter((e) => e.type.startsWith('agent.'));
    expect(enrolled.map((e) => e.type)).toEqual(['agent.enrolled']);
  });

  it('answers the same agent retrying at another coordinator as a repeat: one key, one use', async () => {
    const { first, second, one, other, created } = await group(5);
    const request = enrollRequest('web-1');
    const outcome = await heldWhile(
      first,
      'claiming a use',
      () => one.enroll(created.token, request),
      () => other.enroll(created.token, request),
    );
    expect(JSON.parse(outcome)).toEqual({ hostId: 'web-1', labels: { env: 'prod' }, replaced: false, repeated: true });
    expect(await second.agents.publicKeyOf('web-1')).toBe(request.publicKey);
    expect((await second.joinTokens.get(created.id))?.uses).toBe(1);
  });
});
