/**
 * Two coordinators of a group enrolling at once, on a real PostgreSQL 15. Their transactions are READ
 * COMMITTED and not serialized with each other, so what one read can be out of date by the time it
 * writes. Each case holds the first coordinator's enrollment after some of its reads, lets the second
 * coordinator act and commit, and then lets the first one go on: its writes must go by what is
 * committed, not by what it read.
 */
import {
  byCodeUnits,
  type EnrollRequest,
  enrollProofPayload,
  generateLoadedAgentKeyPair,
  signPayload,
} from '@fleetpatch/shared';
import pg from 'pg';
import { afterAll, expect, it, onTestFinished, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { AgentEnrollment } from '../src/enrollment/agent-enrollment.js';
import { sha256Hex } from '../src/http/api-auth.js';
import type { SharedCommit } from '../src/store/shared-commit.js';
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

/**
 * Enrollments that share a commit (SharedCommit) hold their rows' locks to the commit, so two
 * coordinators' batches could wait on each other: one holds a join token's row the other's next
 * enrollment needs, and the other the reverse, or holds the group's event-order lock. Each case forms
 * a batch on the first coordinator (its enrollments gather while an earlier one's transaction is held
 * open), and lets the batch's second enrollment claim its use only once the second coordinator has
 * finished or is waiting on a lock: where it waited on the first, a deadlock would follow.
 */
describeNeeding(postgresCluster, 'enrollments sharing a commit on PostgreSQL, two coordinators at once', () => {
  const stores: Store[] = [];
  afterAll(async () => {
    for (const store of stores) await store.close();
  });

  type Enrollment = { token: string; hostId: string };

  /**
   * Runs `batches[i]` on coordinator i as one shared transaction each (behind a warm-up enrollment held
   * open, in its own transaction, until the batch has gathered), the first's second enrollment held as
   * said above; answers every enrollment's outcome, the warm-up's first.
   */
  async function enrollInBatches(url: string, warmUps: [string, string], batches: [Enrollment[], Enrollment[]]) {
    const coordinators = [await Store.openPostgres(url), await Store.openPostgres(url)];
    stores.push(...coordinators);
    const side = new pg.Client({ connectionString: url });
    await side.connect();
    const waitingOnALock = () => waitsOnALock(side);
    const finished = [false, false];
    let secondStarted = () => {};
    const secondRunning = new Promise<void>((resolve) => {
      secondStarted = resolve;
    });
    const settle = (enrolling: Promise<unknown>) =>
      enrolling.then(
        () => 'enrolled',
        (err: Error) => err.message,
      );
    try {
      const runs = coordinators.map(async (store, i) => {
        const enrollment = new AgentEnrollment({ store, disconnect: () => {} });
        const batch = batches[i] as Enrollment[];
        // Its SharedCommit, whose submits say when the batch has gathered.
        const shared = (enrollment as unknown as { enrollments: SharedCommit<unknown, unknown> }).enrollments;
        const submitted = vi.spyOn(shared, 'submit');
        const use = store.joinTokens.use.bind(store.joinTokens);
        let uses = 0;
        let warmUpInFlight = () => {};
        const warmUpClaiming = new Promise<void>((resolve) => {
          warmUpInFlight = resolve;
        });
        vi.spyOn(store.joinTokens, 'use').mockImplementation(async (id, at) => {
          uses += 1;
          if (uses === 1) {
            // The warm-up's transaction stays open until the batch has gathered behind it.
            warmUpInFlight();
            await vi.waitFor(() => expect(submitted).toHaveBeenCalledTimes(1 + batch.length), { timeout: 10_000 });
          }
          if (uses === 2 && i === 1) secondStarted();
          if (uses === 3 && i === 0) {
            await secondRunning;
            await vi.waitFor(async () => expect(finished[1] || (await waitingOnALock())).toBe(true), {
              timeout: 10_000,
            });
          }
          return use(id, at);
        });
        const warmUp = settle(enrollment.enroll(warmUps[i] as string, enrollRequest(`warm-up-${i}`)));
        await warmUpClaiming;
        const enrolled = batch.map(({ token, hostId }) => settle(enrollment.enroll(token, enrollRequest(hostId))));
        const settled = await Promise.all([warmUp, ...enrolled]);
        finished[i] = true;
        return settled;
      });
      return await Promise.all(runs);
    } finally {
      await side.end();
    }
  }

  /** Whether a session on this test's database waits on a lock (other test files share the cluster). */
  async function waitsOnALock(side: pg.Client): Promise<boolean> {
    const { rows } = await side.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
        WHERE NOT l.granted AND a.datname = current_database()`,
    );
    return rows[0]?.n !== 0;
  }

  async function tokens(url: string) {
    const store = await Store.openPostgres(url);
    stores.push(store);
    const enrollment = new AgentEnrollment({ store, disconnect: () => {} });
    const made = async () =>
      (
        await enrollment.createJoinToken(
          { uses: 10, expiresInSeconds: 3600, labels: { env: 'prod' }, replace: false },
          'alice',
        )
      ).token;
    return { warmUps: [await made(), await made()] as [string, string], a: await made(), b: await made() };
  }

  it('takes join tokens in one order on every coordinator: batches naming two tokens in opposite orders both enroll', async () => {
    const url = await runPostgresCluster().createDatabase();
    const { warmUps, a, b } = await tokens(url);
    const outcomes = await enrollInBatches(url, warmUps, [
      [
        { token: a, hostId: 'web-1' },
        { token: b, hostId: 'web-2' },
      ],
      [
        { token: b, hostId: 'db-1' },
        { token: a, hostId: 'db-2' },
      ],
    ]);
    expect(outcomes).toEqual([Array(3).fill('enrolled'), Array(3).fill('enrolled')]);
  });

  it('takes the event-order lock at the commit: a batch whose first enrollment wrote its audit row does not hold it while it claims the next use', async () => {
    const url = await runPostgresCluster().createDatabase();
    const { warmUps, a, b } = await tokens(url);
    const [first, second] = [a, b].sort(byCodeUnits) as [string, string];
    const outcomes = await enrollInBatches(url, warmUps, [
      [
        { token: first, hostId: 'web-1' },
        { token: second, hostId: 'web-2' },
      ],
      [{ token: second, hostId: 'db-1' }],
    ]);
    expect(outcomes).toEqual([Array(3).fill('enrolled'), Array(2).fill('enrolled')]);
    const store = stores.at(-1) as Store;
    const enrolled = (await store.allEvents(0, 100)).filter((e) => e.type === 'agent.enrolled');
    expect(enrolled.map((e) => e.hostId).sort()).toEqual(['db-1', 'warm-up-0', 'warm-up-1', 'web-1', 'web-2']);
  });

  it('runs a write refused as a deadlock’s victim again, alone: one host enrolling under two tokens at two coordinators at once', async () => {
    const url = await runPostgresCluster().createDatabase();
    const { warmUps, a, b } = await tokens(url);
    const [first, second] = [a, b].sort(byCodeUnits) as [string, string];
    const [x, y] = [await Store.openPostgres(url), await Store.openPostgres(url)];
    stores.push(x, y);
    const side = new pg.Client({ connectionString: url });
    await side.connect();
    onTestFinished(() => side.end());
    const [onX, onY] = [x, y].map((store) => new AgentEnrollment({ store, disconnect: () => {} })) as [
      AgentEnrollment,
      AgentEnrollment,
    ];
    const submittedOnX = vi.spyOn(
      (onX as unknown as { enrollments: SharedCommit<unknown, unknown> }).enrollments,
      'submit',
    );
    let warmUpInFlight = () => {};
    const warmUpClaiming = new Promise<void>((resolve) => {
      warmUpInFlight = resolve;
    });
    let dupWritten = () => {};
    const dupWrittenOnX = new Promise<void>((resolve) => {
      dupWritten = resolve;
    });
    // On X: a warm-up held open until the batch [dup under the first token, web-2 under the second]
    // has gathered; web-2's claim of the second token waits until Y waits on X's row of dup.
    const useOnX = x.joinTokens.use.bind(x.joinTokens);
    let usesOnX = 0;
    vi.spyOn(x.joinTokens, 'use').mockImplementation(async (id, at) => {
      usesOnX += 1;
      if (usesOnX === 1) {
        warmUpInFlight();
        await vi.waitFor(() => expect(submittedOnX).toHaveBeenCalledTimes(3), { timeout: 10_000 });
      }
      if (usesOnX === 3) await vi.waitFor(async () => expect(await waitsOnALock(side)).toBe(true), { timeout: 10_000 });
      return useOnX(id, at);
    });
    const enrollOnX = x.agents.enroll.bind(x.agents);
    vi.spyOn(x.agents, 'enroll').mockImplementation(async (key, at) => {
      const enrolled = await enrollOnX(key, at);
      if (key.id === 'dup') dupWritten();
      return enrolled;
    });
    // On Y: dup under the second token, its claim once X has written dup (and holds its row).
    const useOnY = y.joinTokens.use.bind(y.joinTokens);
    vi.spyOn(y.joinTokens, 'use').mockImplementation(async (id, at) => {
      await dupWrittenOnX;
      return useOnY(id, at);
    });
    const settle = (enrolling: Promise<unknown>) =>
      enrolling.then(
        () => 'enrolled',
        (err: Error) => err.message,
      );
    const warmUp = settle(onX.enroll(warmUps[0], enrollRequest('warm-up-0')));
    await warmUpClaiming;
    const outcomes = await Promise.all([
      warmUp,
      settle(onX.enroll(first, enrollRequest('dup'))),
      settle(onX.enroll(second, enrollRequest('web-2'))),
      settle(onY.enroll(second, enrollRequest('dup'))),
    ]);
    // Whichever side PostgreSQL refused ran again: every answer is the one it would have had alone.
    expect(outcomes.filter((outcome) => /deadlock/.test(outcome))).toEqual([]);
    expect(outcomes.slice(0, 3)).toEqual(['enrolled', 'enrolled', 'enrolled']);
    expect(outcomes[3]).toMatch(/host dup is already enrolled/);
    expect((await x.joinTokens.get((await x.joinTokens.bySecretHash(sha256Hex(second)))?.id ?? ''))?.uses).toBe(1);
  });
});
