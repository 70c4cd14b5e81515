/**
 * SharedCommit: writes submitted in one turn of the event loop share one transaction (one commit, one
 * sync on a disk), each in a savepoint of it, so that one that throws is undone alone — its rows, its
 * events, its progress and its after-commit callbacks — and only its caller hears of it. Every caller
 * is answered once the commit is done. The same on SQLite and on PostgreSQL.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EventRecord } from '@fleetpatch/shared';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { SavepointLost } from '../src/store/repositories.js';
import { SharedCommit } from '../src/store/shared-commit.js';
import { type ProgressNotice, Store } from '../src/store/store.js';

const AT = '2026-12-07T21:00:00.000Z';

/** What a test write does: an audit row, a progress notice and an after-commit callback, then maybe throws. */
interface Write {
  name: string;
  fails?: Error;
}

function sharedCommitSuite(open: () => Promise<{ store: Store; done: () => Promise<void> }>) {
  let store: Store;
  let done: () => Promise<void>;
  let published: EventRecord[];
  let progress: ProgressNotice[];
  let ranAfterCommit: string[];
  let commits: boolean[];

  beforeEach(async () => {
    ({ store, done } = await open());
    published = [];
    progress = [];
    ranAfterCommit = [];
    commits = [];
    store.onEvent((event) => published.push(event));
    store.onProgress((notice) => progress.push(notice));
    store.observeTransactions((_seconds, committed) => commits.push(committed));
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await done();
  });

  const write = async ({ name, fails }: Write): Promise<string> => {
    await store.appendEvent({ rolloutId: null, hostId: name, actor: 'test', type: 'test.written' }, AT);
    store.noteProgress({ type: 'host.progress', rolloutId: 'ro_1', hostId: name, state: 'applying', at: AT });
    store.afterCommit(() => ranAfterCommit.push(name));
    if (fails) throw fails;
    return `wrote ${name}`;
  };
  const written = async () =>
    (await store.allEvents(0, 1000)).filter((e) => e.type === 'test.written').map((e) => e.hostId);
  /** Submits every write in the same turn; resolves with how each ended. */
  const submitAll = (commit: SharedCommit<Write, string>, writes: Write[]) =>
    Promise.allSettled(writes.map((w) => commit.submit(w)));

  it('writes submitted in one turn share one transaction, each answered with its own result once it has committed', async () => {
    const commit = new SharedCommit(store, write);
    const outcomes = await submitAll(
      commit,
      ['h1', 'h2', 'h3', 'h4', 'h5'].map((name) => ({ name })),
    );
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.reason))).toEqual([
      'wrote h1',
      'wrote h2',
      'wrote h3',
      'wrote h4',
      'wrote h5',
    ]);
    expect(commits).toEqual([true]);
    expect(await written()).toEqual(['h1', 'h2', 'h3', 'h4', 'h5']);
    expect(published.map((e) => e.hostId)).toEqual(['h1', 'h2', 'h3', 'h4', 'h5']);
    expect(ranAfterCommit).toEqual(['h1', 'h2', 'h3', 'h4', 'h5']);
  });

  it('a write that throws is undone alone (its row, event, progress and callback) and only its caller gets the error', async () => {
    const commit = new SharedCommit(store, write);
    const refused = new Error('h3 refused');
    const outcomes = await submitAll(commit, [
      { name: 'h1' },
      { name: 'h2' },
      { name: 'h3', fails: refused },
      { name: 'h4' },
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(outcomes[2]).toEqual({ status: 'rejected', reason: refused });
    expect(commits).toEqual([true]);
    expect(await written()).toEqual(['h1', 'h2', 'h4']);
    expect(published.map((e) => e.hostId)).toEqual(['h1', 'h2', 'h4']);
    expect(progress.map((n) => n.hostId)).toEqual(['h1', 'h2', 'h4']);
    expect(ranAfterCommit).toEqual(['h1', 'h2', 'h4']);
  });

  it('a write the database itself refuses (a duplicate key) is undone alone; the writes after it still commit', async () => {
    // On PostgreSQL a failed statement aborts the whole transaction unless rolled back to a savepoint.
    const token = (id: string) => ({
      id,
      description: null,
      createdBy: 'test',
      createdAt: AT,
      expiresAt: '2027-01-01T00:00:00.000Z',
      maxUses: 1,
      uses: 0,
      labels: {},
      hostId: null,
      replace: false,
      revokedAt: null,
      tokenSha256: id.padEnd(64, '0'),
    });
    // Its audit row first: on PostgreSQL held back, then dropped with the savepoint, not written into
    // a transaction the failed statement has aborted.
    const commit = new SharedCommit(store, async (w: Write) => {
      const wrote = await write(w);
      await store.joinTokens.insert(token(w.name === 'again' ? 'jt_same' : `jt_${w.name}`));
      return wrote;
    });
    const outcomes = await submitAll(commit, [{ name: 'same' }, { name: 'h2' }, { name: 'again' }, { name: 'h4' }]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(commits).toEqual([true]);
    expect(await written()).toEqual(['same', 'h2', 'h4']);
    expect((await store.joinTokens.list(10)).map((t) => t.id).sort()).toEqual(['jt_h2', 'jt_h4', 'jt_same']);
  });

  it('a write alone in its turn is a plain transaction, without a savepoint', async () => {
    const savepoints = vi.spyOn(store.backend, 'inSavepoint');
    const commit = new SharedCommit(store, write);
    await expect(commit.submit({ name: 'h1' })).resolves.toBe('wrote h1');
    const refused = new Error('alone and refused');
    await expect(commit.submit({ name: 'h2', fails: refused })).rejects.toBe(refused);
    expect(savepoints).not.toHaveBeenCalled();
    expect(commits).toEqual([true, false]);
    expect(await written()).toEqual(['h1']);
    // Two in one turn: a savepoint each.
    await submitAll(commit, [{ name: 'h3' }, { name: 'h4' }]);
    expect(savepoints).toHaveBeenCalledTimes(2);
  });

  it('runs a transaction’s writes in lockOrder, the same on every coordinator, each caller still answered with its own result', async () => {
    const commit = new SharedCommit(store, write, (a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const refused = new Error('refused');
    const outcomes = await submitAll(commit, [{ name: 'h3' }, { name: 'h1', fails: refused }, { name: 'h2' }]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.reason))).toEqual([
      'wrote h3',
      refused,
      'wrote h2',
    ]);
    expect(commits).toEqual([true]);
    expect(await written()).toEqual(['h2', 'h3']);
    expect(ranAfterCommit).toEqual(['h2', 'h3']);
  });

  it('runs a write refused as a deadlock’s victim (PostgreSQL’s 40P01) once more, alone, and answers with that', async () => {
    const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01' });
    let refusals = 1;
    const commit = new SharedCommit(store, async (w: Write) => {
      if (w.name === 'h2' && refusals-- > 0) throw deadlock;
      return write(w);
    });
    const outcomes = await submitAll(commit, [{ name: 'h1' }, { name: 'h2' }, { name: 'h3' }]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : o.reason))).toEqual([
      'wrote h1',
      'wrote h2',
      'wrote h3',
    ]);
    expect(commits).toEqual([true, true]); // the batch, then h2 alone
    expect(await written()).toEqual(['h1', 'h3', 'h2']);
    // Refused again when alone: that is its answer.
    refusals = 2;
    const [again] = await submitAll(commit, [{ name: 'h2' }]);
    expect(again).toEqual({ status: 'rejected', reason: deadlock });
  });

  it('takes at most maxPerCommit writes per transaction; the rest follow in the next ones, in order', async () => {
    const commit = new SharedCommit(store, write, undefined, 2);
    const outcomes = await submitAll(
      commit,
      ['h1', 'h2', 'h3', 'h4', 'h5'].map((name) => ({ name })),
    );
    expect(outcomes.every((o) => o.status === 'fulfilled')).toBe(true);
    expect(commits).toEqual([true, true, true]);
    expect(await written()).toEqual(['h1', 'h2', 'h3', 'h4', 'h5']);
  });

  it('writes that arrive while its transaction is in flight wait for it, then share the next one', async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const commit = new SharedCommit(store, async (w: Write) => {
      // The first write waits as on a slow database (a test only: a write must wait on nothing but the store).
      if (w.name === 'h1') await held;
      return await write(w);
    });
    const first = commit.submit({ name: 'h1' });
    const later: Promise<string>[] = [];
    for (const name of ['h2', 'h3', 'h4']) {
      await new Promise((resolve) => setImmediate(resolve));
      later.push(commit.submit({ name }));
    }
    await new Promise((resolve) => setImmediate(resolve));
    expect(commits).toEqual([]);
    release();
    await expect(first).resolves.toBe('wrote h1');
    await expect(Promise.all(later)).resolves.toEqual(['wrote h2', 'wrote h3', 'wrote h4']);
    expect(commits).toEqual([true, true]);
    expect(await written()).toEqual(['h1', 'h2', 'h3', 'h4']);
  });

  it('a savepoint that could not be rolled back fails the whole transaction: nothing commits, and every caller gets its error', async () => {
    const commit = new SharedCommit(store, write);
    const refused = new Error('h2 refused');
    const lost = new SavepointLost(new Error('disk I/O error'));
    const outcomes = await submitAll(commit, [
      { name: 'h1' },
      { name: 'h2', fails: refused },
      { name: 'h3', fails: lost },
      { name: 'h4' },
    ]);
    // h2's refusal is not its answer: it may have been refused for what h1 wrote, which never committed.
    expect(outcomes).toEqual([
      { status: 'rejected', reason: lost },
      { status: 'rejected', reason: lost },
      { status: 'rejected', reason: lost },
      { status: 'rejected', reason: lost },
    ]);
    expect(commits).toEqual([false]);
    expect(await written()).toEqual([]);
    expect(published).toEqual([]);
    expect(progress).toEqual([]);
    expect(ranAfterCommit).toEqual([]);
  });

  it('refuses a submission from inside a store transaction (the shared one would wait for it forever), and writes nothing', async () => {
    const commit = new SharedCommit(store, write);
    await store.transaction(async () => {
      await expect(commit.submit({ name: 'h1' })).rejects.toThrow(
        'SharedCommit.submit must not be called inside Store.transaction()',
      );
    });
    expect(await written()).toEqual([]);
  });

  it('Store.attempt outside a transaction is refused', async () => {
    await expect(store.attempt(async () => 1)).rejects.toThrow('attempt must run inside Store.transaction()');
  });
}

describe('SharedCommit on SQLite', () => {
  sharedCommitSuite(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-shared-commit-'));
    const store = await Store.open(join(dir, 'fleet.db'));
    return {
      store,
      done: async () => {
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  });
});

describeNeeding(postgresCluster, 'SharedCommit on PostgreSQL', () => {
  sharedCommitSuite(async () => {
    const store = await Store.openPostgres(await runPostgresCluster().createDatabase());
    return { store, done: () => store.close() };
  });
});
