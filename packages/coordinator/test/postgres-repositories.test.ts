/**
 * The PostgreSQL twins of the agent, join token, patch, rollout and event repositories and the
 * state counts, against a real PostgreSQL 15 — and every expectation here is also run on the SQLite
 * repository it mirrors, so what is asserted is the shared contract the engine relies on, not
 * what PostgreSQL happens to do: timestamps read back as the ISO strings written, JSON and flags
 * as the values written, the same orders (ties included), the same answers on conflicts.
 */
import { type Patch, patchSummaryOf, RolloutRequestSchema, storedPatch } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { openDatabase } from '../src/store/database.js';
import { BACKFILL_PAGE } from '../src/store/patch-repository.js';
import { PostgresAgentRepository } from '../src/store/postgres/postgres-agent-repository.js';
import { PostgresEventRepository } from '../src/store/postgres/postgres-event-repository.js';
import { PostgresExecutor } from '../src/store/postgres/postgres-executor.js';
import { PostgresJoinTokenRepository } from '../src/store/postgres/postgres-join-token-repository.js';
import { migratePostgres } from '../src/store/postgres/postgres-migrate.js';
import { PostgresPatchRepository } from '../src/store/postgres/postgres-patch-repository.js';
import { PostgresRolloutRepository } from '../src/store/postgres/postgres-rollout-repository.js';
import { PostgresStateCounts } from '../src/store/postgres/postgres-state-counts.js';
import type { Repositories, StateCountsReader } from '../src/store/repositories.js';
import { SqliteBackend } from '../src/store/sqlite-backend.js';
import { SAMPLE_PATCH_SPEC } from './support/sample-patch.js';
import { FACTS } from './support/simulated-fleet.js';

/** The repositories under test, and raw SQL for what a test sets up outside them. */
interface Subject {
  readonly kind: 'sqlite' | 'postgres';
  readonly repos: Pick<Repositories, 'agents' | 'joinTokens' | 'patches' | 'rollouts' | 'events'> & {
    stateCounts: StateCountsReader;
  };
  /** Runs one statement; `?` placeholders, rewritten to `$n` for PostgreSQL. */
  sql(text: string, values?: readonly unknown[]): Promise<Record<string, unknown>[]>;
  close(): Promise<void>;
}

function sqliteSubject(): Subject {
  const backend = new SqliteBackend(openDatabase(':memory:'));
  return {
    kind: 'sqlite',
    repos: backend,
    async sql(text, values = []) {
      const statement = backend.db.prepare(text);
      if (statement.reader) return statement.all(...values) as Record<string, unknown>[];
      statement.run(...values);
      return [];
    },
    close: () => backend.close(),
  };
}

async function postgresSubject(url: string): Promise<Subject> {
  const executor = new PostgresExecutor(url);
  const client = await executor.pool.connect();
  try {
    await migratePostgres(client);
  } finally {
    client.release();
  }
  return {
    kind: 'postgres',
    repos: {
      agents: new PostgresAgentRepository(executor),
      joinTokens: new PostgresJoinTokenRepository(executor),
      patches: new PostgresPatchRepository(executor),
      rollouts: new PostgresRolloutRepository(executor),
      events: new PostgresEventRepository(executor),
      stateCounts: new PostgresStateCounts(executor),
    },
    sql: (text, values = []) => {
      let n = 0;
      return executor.query(
        text.replace(/\?/g, () => `$${++n}`),
        values,
      );
    },
    close: () => executor.close(),
  };
}

const at = (second: number) => new Date(Date.UTC(2030, 0, 7, 12, 0, second, 123)).toISOString();
const request = RolloutRequestSchema.parse({ patchId: 'pat_1', target: { labels: { env: 'prod' } }, maxParallel: 3 });
const patch = (id: string, createdAt: string, title = 'Raise app workers to 8'): Patch =>
  storedPatch({ ...SAMPLE_PATCH_SPEC, title }, { id, createdBy: 'alice', createdAt });

/**
 * The contract, written once: each test gets a fresh store of the kind it runs on. PostgreSQL's
 * stores are fresh databases of the run's one cluster.
 */
function contract(open: () => Promise<Subject>): void {
  let subject: Subject;
  beforeAll(async () => {
    subject = await open();
  }, 60_000);
  afterAll(async () => subject?.close());
  const repos = () => subject.repos;

  describe('agents', () => {
    it('round-trips an enrolled agent: labels, null facts, its timestamps', async () => {
      await repos().agents.enroll(
        { id: 'web-1', publicKey: 'key-1', labels: { env: 'prod', role: 'web' }, mayReplace: false },
        at(1),
      );
      expect(await repos().agents.get('web-1')).toEqual({
        id: 'web-1',
        labels: { env: 'prod', role: 'web' },
        reportedLabels: {},
        facts: null,
        agentVersion: null,
        lastSeenAt: null,
        createdAt: at(1),
        enrolledAt: at(1),
        revokedAt: null,
        removedAt: null,
      });
      expect(await repos().agents.get('nobody')).toBeUndefined();
    });

    it('re-enrolment lays the new labels over the kept ones, takes the new key and clears revoked and removed', async () => {
      await repos().agents.revoke('web-1', at(2));
      await repos().agents.remove('web-1', at(3));
      expect(await repos().agents.publicKeyOf('web-1')).toBeUndefined();
      expect(await repos().agents.get('web-1')).toMatchObject({ revokedAt: at(2), removedAt: at(3) });
      await repos().agents.enroll(
        { id: 'web-1', publicKey: 'key-2', labels: { role: 'db', zone: 'a' }, mayReplace: true },
        at(4),
      );
      expect(await repos().agents.get('web-1')).toMatchObject({
        labels: { env: 'prod', role: 'db', zone: 'a' },
        createdAt: at(1),
        enrolledAt: at(4),
        revokedAt: null,
        removedAt: null,
      });
      expect(await repos().agents.publicKeyOf('web-1')).toBe('key-2');
      expect(await repos().agents.publicKeyOf('nobody')).toBeUndefined();
    });

    it('records hellos and sightings, and lists agents by id byte by byte', async () => {
      const facts = { ...FACTS, hostname: 'web-1' };
      await repos().agents.recordHello('web-1', { labels: { rack: 'r1' }, facts, agentVersion: '1.2.3' }, at(5));
      expect(await repos().agents.get('web-1')).toMatchObject({
        reportedLabels: { rack: 'r1' },
        facts,
        agentVersion: '1.2.3',
        lastSeenAt: at(5),
      });
      await repos().agents.recordSightings([['web-1', at(6)]]);
      expect((await repos().agents.get('web-1'))?.lastSeenAt).toBe(at(6));
      // Several at once, an unknown agent among them (removed meanwhile): no row, nothing written.
      await repos().agents.enroll({ id: 'web-2', publicKey: 'k', labels: {}, mayReplace: false }, at(6));
      await repos().agents.recordSightings([
        ['web-2', at(8)],
        ['nobody', at(8)],
        ['web-1', at(9)],
      ]);
      await repos().agents.recordSightings([]);
      expect((await repos().agents.get('web-1'))?.lastSeenAt).toBe(at(9));
      expect((await repos().agents.get('web-2'))?.lastSeenAt).toBe(at(8));
      expect(await repos().agents.get('nobody')).toBeUndefined();
      for (const id of ['host-2', 'host-10', 'Zulu', 'alpha']) {
        await repos().agents.enroll({ id, publicKey: 'k', labels: {}, mayReplace: false }, at(7));
      }
      expect((await repos().agents.list()).map((a) => a.id)).toEqual([
        'Zulu',
        'alpha',
        'host-10',
        'host-2',
        'web-1',
        'web-2',
      ]);
    });
  });

  describe('agents racing', () => {
    it('gives an enrolled host a new key only when the enrollment may replace; revokes and removes once', async () => {
      await repos().agents.enroll(
        { id: 'race-1', publicKey: 'key-a', labels: { env: 'prod' }, mayReplace: false },
        at(1),
      );
      // Another coordinator's enrollment of the same host, which read it before the first committed.
      expect(
        await repos().agents.enroll(
          { id: 'race-1', publicKey: 'key-b', labels: { env: 'dev' }, mayReplace: false },
          at(2),
        ),
      ).toBe(false);
      expect(await repos().agents.publicKeyOf('race-1')).toBe('key-a');
      expect((await repos().agents.get('race-1'))?.labels).toEqual({ env: 'prod' });
      expect(
        await repos().agents.enroll({ id: 'race-1', publicKey: 'key-c', labels: {}, mayReplace: true }, at(3)),
      ).toBe(true);
      expect(await repos().agents.publicKeyOf('race-1')).toBe('key-c');
      expect([await repos().agents.revoke('race-1', at(4)), await repos().agents.revoke('race-1', at(5))]).toEqual([
        true,
        false,
      ]);
      expect([await repos().agents.remove('race-1', at(6)), await repos().agents.remove('race-1', at(7))]).toEqual([
        true,
        false,
      ]);
      expect(await repos().agents.get('race-1')).toMatchObject({ revokedAt: at(4), removedAt: at(6) });
      // Revoked, it takes a key again only by replacing.
      expect(
        await repos().agents.enroll({ id: 'race-1', publicKey: 'key-d', labels: {}, mayReplace: false }, at(8)),
      ).toBe(false);
      await subject.sql('DELETE FROM agents WHERE id = ?', ['race-1']);
    });
  });

  describe('join tokens', () => {
    const token = (id: string, createdAt: string, extra: { replace?: boolean; maxUses?: number } = {}) => ({
      id,
      tokenSha256: `sha-${id}`,
      description: id === 'jt_a' ? 'for the web tier' : null,
      createdBy: 'alice',
      createdAt,
      expiresAt: at(50),
      maxUses: extra.maxUses ?? 2,
      uses: 0,
      labels: { env: 'prod' },
      hostId: id === 'jt_a' ? 'web-9' : null,
      replace: extra.replace ?? false,
      revokedAt: null,
    });

    it('round-trips a token, its replace flag either way, by id and by secret hash', async () => {
      await repos().joinTokens.insert(token('jt_a', at(1), { replace: true }));
      await repos().joinTokens.insert(token('jt_b', at(1)));
      const { tokenSha256: _, ...stored } = token('jt_a', at(1), { replace: true });
      expect(await repos().joinTokens.get('jt_a')).toEqual(stored);
      expect(await repos().joinTokens.get('jt_b')).toMatchObject({ replace: false, hostId: null, description: null });
      expect(await repos().joinTokens.bySecretHash('sha-jt_b')).toMatchObject({ id: 'jt_b' });
      expect(await repos().joinTokens.bySecretHash('sha-nothing')).toBeUndefined();
    });

    it('refuses a second token with the same id or the same secret', async () => {
      await expect(repos().joinTokens.insert({ ...token('jt_a', at(2)), tokenSha256: 'other' })).rejects.toThrow();
      await expect(repos().joinTokens.insert({ ...token('jt_c', at(2)), tokenSha256: 'sha-jt_a' })).rejects.toThrow();
      expect(await repos().joinTokens.get('jt_c')).toBeUndefined();
    });

    it('lists newest first, ties by id, up to the limit', async () => {
      await repos().joinTokens.insert(token('jt_0', at(3)));
      expect((await repos().joinTokens.list(10)).map((t) => t.id)).toEqual(['jt_0', 'jt_a', 'jt_b']);
      expect((await repos().joinTokens.list(2)).map((t) => t.id)).toEqual(['jt_0', 'jt_a']);
    });

    it('counts uses up to the maximum, then refuses; revokes once', async () => {
      expect([await repos().joinTokens.use('jt_b', at(9)), await repos().joinTokens.use('jt_b', at(9))]).toEqual([
        true,
        true,
      ]);
      expect(await repos().joinTokens.use('jt_b', at(9))).toBe(false);
      expect(await repos().joinTokens.use('jt_nothing', at(9))).toBe(false);
      expect((await repos().joinTokens.get('jt_b'))?.uses).toBe(2);
      expect(await repos().joinTokens.revoke('jt_a', at(4))).toBe(true);
      expect(await repos().joinTokens.revoke('jt_a', at(5))).toBe(false);
      expect((await repos().joinTokens.get('jt_a'))?.revokedAt).toBe(at(4));
      // Revoked (jt_a), or expired (jt_0's expiry is at(50)): no use is claimed, whatever a read said before.
      expect(await repos().joinTokens.use('jt_a', at(9))).toBe(false);
      expect(await repos().joinTokens.use('jt_0', at(50))).toBe(false);
      expect(await repos().joinTokens.use('jt_0', at(49))).toBe(true);
      expect((await repos().joinTokens.get('jt_a'))?.uses).toBe(0);
    });
  });

  describe('patches', () => {
    it('round-trips a patch whole, and refuses its id twice', async () => {
      const first = patch('pat_1', at(1));
      await repos().patches.insert(first);
      expect(await repos().patches.get('pat_1')).toEqual(first);
      await expect(repos().patches.insert(patch('pat_1', at(2), 'other'))).rejects.toThrow();
      expect(await repos().patches.get('pat_1')).toEqual(first);
    });

    it('lists newest first (ties by id, descending) and finds the same content by digest, oldest first', async () => {
      await repos().patches.insert(patch('pat_3', at(2), 'Same change, other words'));
      await repos().patches.insert(patch('pat_2', at(2), 'Same change, third words'));
      expect((await repos().patches.list(10)).map((p) => p.id)).toEqual(['pat_3', 'pat_2', 'pat_1']);
      expect((await repos().patches.list(1)).map((p) => p.id)).toEqual(['pat_3']);
      const digest = (await repos().patches.get('pat_1'))?.contentDigest ?? '';
      expect(await repos().patches.idsWithDigest(digest)).toEqual(['pat_1', 'pat_2', 'pat_3']);
      expect(await repos().patches.idsWithDigest('nothing')).toEqual([]);
    });

    it('backfills the digest of a patch stored without one', async () => {
      const digest = (await repos().patches.get('pat_1'))?.contentDigest;
      await subject.sql('UPDATE patches SET content_digest = NULL WHERE id = ?', ['pat_1']);
      await repos().patches.backfillDigests();
      expect(await subject.sql('SELECT content_digest FROM patches WHERE id = ?', ['pat_1'])).toEqual([
        { content_digest: digest },
      ]);
    });

    it('lists summaries: a file by the sha256 and size of its content, never the content', async () => {
      const [listed] = await repos().patches.list(1);
      const whole = await repos().patches.get('pat_3');
      expect(whole).toBeDefined();
      expect(listed).toEqual(patchSummaryOf(whole as Patch));
      expect(listed?.change).toMatchObject({ kind: 'file', path: '/etc/app/app.conf', contentBytes: 12 });
      expect(listed?.change).not.toHaveProperty('content');
      expect(listed).not.toHaveProperty('problem');
    });

    it("answers one patch's summary by id, as the list has it, and nothing for an unknown id", async () => {
      const whole = await repos().patches.get('pat_2');
      expect(whole).toBeDefined();
      expect(await repos().patches.summary('pat_2')).toEqual(patchSummaryOf(whole as Patch));
      expect(await repos().patches.summary('pat_nope')).toBeUndefined();
    });

    it('backfills summaries a page at a time, past a patch whose spec no longer parses', async () => {
      const ids = Array.from({ length: 2 * BACKFILL_PAGE + 10 }, (_, i) => `pat_b${String(i).padStart(4, '0')}`);
      try {
        for (const id of ids) await repos().patches.insert(patch(id, at(3)));
        await subject.sql("DELETE FROM patch_summaries WHERE id LIKE 'pat_b%'", []);
        // One in the first page that gets no summary (it has no change any more): skipped, not looped on.
        await subject.sql('UPDATE patches SET spec = ? WHERE id = ?', ['{}', ids[5]]);
        await repos().patches.backfillSummaries();
        const listed = new Set((await repos().patches.list(500)).map((p) => p.id));
        expect(ids.filter((id) => !listed.has(id))).toEqual([ids[5]]);
      } finally {
        await subject.sql("DELETE FROM patch_summaries WHERE id LIKE 'pat_b%'", []);
        await subject.sql("DELETE FROM patches WHERE id LIKE 'pat_b%'", []);
      }
    });

    it('backfills the summary of a patch stored before summaries, which no list showed until then', async () => {
      await subject.sql('DELETE FROM patch_summaries WHERE id = ?', ['pat_1']);
      expect((await repos().patches.list(10)).map((p) => p.id)).toEqual(['pat_3', 'pat_2']);
      await repos().patches.backfillSummaries();
      await repos().patches.backfillSummaries();
      const whole = (await repos().patches.get('pat_1')) as Patch;
      expect(await repos().patches.list(10)).toEqual([
        expect.objectContaining({ id: 'pat_3' }),
        expect.objectContaining({ id: 'pat_2' }),
        patchSummaryOf(whole),
      ]);
    });
  });

  describe('rollouts', () => {
    const create = (id: string, createdAt: string, patchId = 'pat_1') =>
      repos().rollouts.insert({ id, patchId, request, state: 'awaiting_approval', createdBy: 'bob' }, createdAt);

    it('round-trips a rollout: its request, state, counters and timestamps', async () => {
      await create('ro_b', at(10));
      expect(await repos().rollouts.get('ro_b')).toEqual({
        id: 'ro_b',
        patchId: 'pat_1',
        request,
        state: 'awaiting_approval',
        createdBy: 'bob',
        hostCount: 0,
        waveCount: 0,
        currentWave: 0,
        bakeUntil: null,
        stateReason: null,
        createdAt: at(10),
        updatedAt: at(10),
        startedAt: null,
        finishedAt: null,
      });
      expect(await repos().rollouts.get('ro_nothing')).toBeUndefined();
    });

    it('refuses a rollout of an unknown patch, and its id twice', async () => {
      await expect(create('ro_x', at(10), 'pat_nothing')).rejects.toThrow();
      await expect(create('ro_b', at(11))).rejects.toThrow();
      expect(await repos().rollouts.get('ro_x')).toBeUndefined();
    });

    it("reads a rollout's request once: later reads take only the rest of the row, and an id inserted anew its new request", async () => {
      const other = RolloutRequestSchema.parse({ patchId: 'pat_1', target: { hostIds: ['web-9'] } });
      await create('ro_k', at(10));
      expect((await repos().rollouts.get('ro_k'))?.request).toEqual(request);
      // Nothing rewrites a request; one rewritten behind the repository's back shows it is not read again.
      await subject.sql('UPDATE rollouts SET request = ? WHERE id = ?', [JSON.stringify(other), 'ro_k']);
      await repos().rollouts.setState('ro_k', 'running', null, false, at(11));
      expect(await repos().rollouts.get('ro_k')).toMatchObject({ request, state: 'running', startedAt: at(11) });
      // The row gone, as a rolled-back insert leaves it, and its id inserted again: the new row is read whole.
      await subject.sql('DELETE FROM rollouts WHERE id = ?', ['ro_k']);
      expect(await repos().rollouts.get('ro_k')).toBeUndefined();
      await repos().rollouts.insert(
        { id: 'ro_k', patchId: 'pat_1', request: other, state: 'awaiting_approval', createdBy: 'bob' },
        at(12),
      );
      expect(await repos().rollouts.get('ro_k')).toMatchObject({ request: other, state: 'awaiting_approval' });
      await subject.sql('DELETE FROM rollouts WHERE id = ?', ['ro_k']);
    });

    it('starts once, finishes when final and unfinishes when not; keeps the bake deadline in ms', async () => {
      await repos().rollouts.freezeTarget('ro_b', 12, 3);
      await repos().rollouts.setState('ro_b', 'running', null, false, at(11));
      await repos().rollouts.setState('ro_b', 'paused', 'by bob', false, at(12));
      await repos().rollouts.setState('ro_b', 'running', null, false, at(13));
      const bakeUntil = Date.parse(at(40));
      await repos().rollouts.setWave('ro_b', 2, bakeUntil, at(14));
      expect(await repos().rollouts.get('ro_b')).toMatchObject({
        state: 'running',
        hostCount: 12,
        waveCount: 3,
        currentWave: 2,
        bakeUntil,
        startedAt: at(11),
        updatedAt: at(14),
        finishedAt: null,
      });
      await repos().rollouts.setState('ro_b', 'halted', 'too many failures', true, at(15));
      expect(await repos().rollouts.get('ro_b')).toMatchObject({
        stateReason: 'too many failures',
        finishedAt: at(15),
      });
      await repos().rollouts.setState('ro_b', 'running', null, false, at(16));
      expect(await repos().rollouts.get('ro_b')).toMatchObject({ startedAt: at(11), finishedAt: null });
      await repos().rollouts.setWave('ro_b', 3, null, at(17));
      expect((await repos().rollouts.get('ro_b'))?.bakeUntil).toBeNull();
    });

    it('lists by state and by patch oldest first, and all rollouts newest first', async () => {
      await create('ro_a', at(10));
      await create('ro_c', at(9), 'pat_2');
      await repos().rollouts.setState('ro_c', 'running', null, false, at(9));
      const ids = (records: readonly { id: string }[]) => records.map((r) => r.id);
      expect(ids(await repos().rollouts.inStates(['running', 'awaiting_approval']))).toEqual(['ro_c', 'ro_a', 'ro_b']);
      expect(ids(await repos().rollouts.inStates(['running']))).toEqual(['ro_c', 'ro_b']);
      expect(ids(await repos().rollouts.inStates([]))).toEqual([]);
      expect(ids(await repos().rollouts.ofPatches(['pat_1', 'pat_2']))).toEqual(['ro_c', 'ro_a', 'ro_b']);
      expect(ids(await repos().rollouts.ofPatches(['pat_1']))).toEqual(['ro_a', 'ro_b']);
      expect(ids(await repos().rollouts.list(10))).toEqual(['ro_b', 'ro_a', 'ro_c']);
      expect(ids(await repos().rollouts.list(1))).toEqual(['ro_b']);
    });

    it('records each approver once, in the order they approved', async () => {
      expect(await repos().rollouts.addApproval('ro_a', 'carol', at(20))).toBe(true);
      expect(await repos().rollouts.addApproval('ro_a', 'bob', at(21))).toBe(true);
      expect(await repos().rollouts.addApproval('ro_a', 'carol', at(22))).toBe(false);
      expect(await repos().rollouts.approvals('ro_a')).toEqual([
        { approver: 'carol', at: at(20) },
        { approver: 'bob', at: at(21) },
      ]);
      expect(await repos().rollouts.approvals('ro_c')).toEqual([]);
    });

    it('keeps the promotion decision as written; none until then', async () => {
      expect(await repos().rollouts.promotion('ro_a')).toBeUndefined();
      const decision = {
        label: 'env',
        order: ['staging', 'prod'],
        minSoakMinutes: 0.5,
        environments: [{ env: 'prod', hosts: 3 }],
        unlabeled: 0,
        requirements: [],
        override: { by: 'carol', at: at(23), reason: 'hotfix' },
      };
      await repos().rollouts.setPromotion('ro_a', decision);
      expect(await repos().rollouts.promotion('ro_a')).toEqual(decision);
    });

    it('tells whether a revert was asked at or after an instant', async () => {
      await subject.sql('INSERT INTO events (rollout_id, actor, type, at) VALUES (?, ?, ?, ?)', [
        'ro_a',
        'carol',
        'host.revert_requested',
        at(30),
      ]);
      expect(await repos().rollouts.revertedSince('ro_a', at(29))).toBe(true);
      expect(await repos().rollouts.revertedSince('ro_a', at(30))).toBe(true);
      expect(await repos().rollouts.revertedSince('ro_a', at(31))).toBe(false);
      expect(await repos().rollouts.revertedSince('ro_b', at(0))).toBe(false);
    });
  });

  describe('events', () => {
    it('appends with increasing seqs and reads back what it returned: JSON data, nulls, timestamps', async () => {
      const before = (await repos().events.pageAll(0, 1000)).at(-1)?.seq ?? 0;
      const first = await repos().events.append(
        {
          rolloutId: 'ro_a',
          actor: 'engine',
          type: 'rollout.state',
          fromState: 'awaiting_approval',
          toState: 'running',
        },
        at(40),
      );
      const second = await repos().events.append(
        {
          rolloutId: 'ro_a',
          hostId: 'web-1',
          actor: 'agent',
          type: 'host.result',
          data: { ok: true, n: 2, list: [1] },
        },
        at(41),
      );
      const third = await repos().events.append({ actor: 'alice', type: 'agent.enrolled', data: {} }, at(41));
      expect(first.seq).toBeGreaterThan(before);
      expect([second.seq - first.seq, third.seq - second.seq]).toEqual([1, 1]);
      expect(first).toEqual({
        seq: first.seq,
        rolloutId: 'ro_a',
        hostId: null,
        actor: 'engine',
        type: 'rollout.state',
        fromState: 'awaiting_approval',
        toState: 'running',
        data: null,
        at: at(40),
      });
      expect(await repos().events.pageAll(before, 1000)).toEqual([first, second, third]);
    });

    it('pages one rollout or all after a seq, oldest first, up to the limit', async () => {
      const all = await repos().events.pageAll(0, 1000);
      const ofA = all.filter((e) => e.rolloutId === 'ro_a');
      expect(await repos().events.page('ro_a', 0, 1000)).toEqual(ofA);
      expect(await repos().events.page('ro_a', ofA[0]?.seq ?? 0, 1)).toEqual(ofA.slice(1, 2));
      expect(await repos().events.pageAll(all.at(-2)?.seq ?? 0, 1000)).toEqual(all.slice(-1));
      expect(await repos().events.pageAll(0, 2)).toEqual(all.slice(0, 2));
      expect(await repos().events.page('ro_nothing', 0, 10)).toEqual([]);
    });

    it('finds the latest of some states a rollout moved to', async () => {
      await repos().events.append(
        { rolloutId: 'ro_a', actor: 'engine', type: 'rollout.state', toState: 'halted' },
        at(42),
      );
      await repos().events.append(
        { rolloutId: 'ro_a', actor: 'engine', type: 'rollout.state', toState: 'running' },
        at(43),
      );
      // A host's event is not the rollout's, whatever state it names.
      await repos().events.append(
        { rolloutId: 'ro_a', hostId: 'h1', actor: 'h1', type: 'host.state', toState: 'aborted' },
        at(44),
      );
      expect(await repos().events.lastRolloutToState('ro_a', ['halted', 'succeeded'])).toBe('halted');
      expect(await repos().events.lastRolloutToState('ro_a', ['halted', 'running'])).toBe('running');
      expect(await repos().events.lastRolloutToState('ro_a', ['aborted'])).toBeUndefined();
    });
  });

  describe('state counts', () => {
    it('counts rollouts and host runs by state', async () => {
      expect(await repos().stateCounts.rollouts()).toEqual(
        new Map([
          ['awaiting_approval', 1],
          ['running', 2],
        ]),
      );
      expect(await repos().stateCounts.hostRuns()).toEqual(new Map());
      for (const [host, state] of [
        ['web-1', 'succeeded'],
        ['web-2', 'succeeded'],
        ['web-3', 'failed'],
      ]) {
        await subject.sql('INSERT INTO host_runs (rollout_id, host_id, wave, position, state) VALUES (?, ?, 0, 0, ?)', [
          'ro_a',
          host,
          state,
        ]);
      }
      expect(await repos().stateCounts.hostRuns()).toEqual(
        new Map([
          ['failed', 1],
          ['succeeded', 2],
        ]),
      );
    });
  });
}

describe('the SQLite repositories (the reference)', () => {
  contract(async () => sqliteSubject());
});

describeNeeding(postgresCluster, 'the PostgreSQL repositories', () => {
  contract(async () => await postgresSubject(await runPostgresCluster().createDatabase()));
});
