/**
 * A PostgreSQL transaction's audit events are held back and written in one statement before it
 * commits (postgres-event-repository.ts): a round trip per transaction instead of one per event. What
 * must not change with it: the seqs follow the order of the appends, a statement of the same
 * transaction that reads events sees every one appended before it, a rollback leaves none, and the
 * records published after the commit carry their seqs.
 */
import type { EventRecord } from '@fleetpatch/shared';
import pg from 'pg';
import { afterEach, beforeEach, expect, it, vi } from 'vitest';
import { postgresCluster, runPostgresCluster } from '../../../test/support/postgres-cluster.js';
import { describeNeeding } from '../../../test/support/requirements.js';
import { EVENT_ORDER_LOCK_KEY, PostgresEventRepository } from '../src/store/postgres/postgres-event-repository.js';
import { PostgresExecutor } from '../src/store/postgres/postgres-executor.js';
import { Store } from '../src/store/store.js';

const AT = '2026-12-04T15:00:00.000Z';

describeNeeding(postgresCluster, 'events held back in a PostgreSQL transaction', () => {
  let store: Store;
  let url: string;
  let published: EventRecord[];
  /** The statements sent to PostgreSQL while a test runs, by their text. */
  let sent: string[];

  beforeEach(async () => {
    url = await runPostgresCluster().createDatabase();
    store = await Store.openPostgres(url);
    published = [];
    store.onEvent((event) => published.push(event));
    sent = [];
    const query = pg.Client.prototype.query;
    vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
      const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
      if (text !== undefined) sent.push(text);
      return (query as (...a: unknown[]) => unknown).apply(this, args);
    } as never);
  });

  afterEach(async () => {
    vi.restoreAllMocks();
    await store.close();
  });

  const inserts = () => sent.filter((text) => /^\s*INSERT INTO events/.test(text)).length;
  const event = (type: string, hostId: string | null = null) => ({ rolloutId: null, hostId, actor: 'test', type });

  it('writes a transaction’s events in one statement, seqs in the order of the appends, and publishes them after the commit', async () => {
    const before = await store.allEvents(0, 1000);
    await store.transaction(async () => {
      for (let i = 0; i < 5; i++) await store.appendEvent(event(`test.e${i}`, `h${i}`), AT);
      expect(inserts()).toBe(0); // held until the commit
    });
    expect(inserts()).toBe(1);
    const written = (await store.allEvents(before.at(-1)?.seq ?? 0, 1000)).map(({ seq, type, hostId }) => ({
      seq,
      type,
      hostId,
    }));
    expect(written.map((e) => e.type)).toEqual(['test.e0', 'test.e1', 'test.e2', 'test.e3', 'test.e4']);
    expect(written.map((e) => e.seq)).toEqual([...written.map((e) => e.seq)].sort((a, b) => a - b));
    // What went out to live readers is what was written, seqs included.
    expect(published.map(({ seq, type, hostId }) => ({ seq, type, hostId }))).toEqual(written);
  });

  it('lets a statement of the same transaction that reads events see every one appended before it', async () => {
    const before = (await store.allEvents(0, 1000)).at(-1)?.seq ?? 0;
    let seen: EventRecord[] = [];
    let seenAfterMore: EventRecord[] = [];
    await store.transaction(async () => {
      await store.appendEvent(event('test.first'), AT);
      await store.appendEvent(event('test.second'), AT);
      seen = await store.allEvents(before, 1000);
      await store.appendEvent(event('test.third'), AT);
      seenAfterMore = await store.allEvents(before, 1000);
    });
    expect(seen.map((e) => e.type)).toEqual(['test.first', 'test.second']);
    expect(seenAfterMore.map((e) => e.type)).toEqual(['test.first', 'test.second', 'test.third']);
    // Read back as written: each read wrote what was held before it, and nothing twice.
    expect(inserts()).toBe(2);
    expect(await store.allEvents(before, 1000)).toEqual(seenAfterMore);
    expect(published).toEqual(seenAfterMore);
  });

  it('leaves no event of a transaction that rolls back, and publishes none', async () => {
    const before = await store.allEvents(0, 1000);
    await expect(
      store.transaction(async () => {
        await store.appendEvent(event('test.lost'), AT);
        throw new Error('the step failed');
      }),
    ).rejects.toThrow('the step failed');
    expect(await store.allEvents(0, 1000)).toEqual(before);
    expect(published).toEqual([]);
    expect(inserts()).toBe(0);
  });

  it('rolls the whole transaction back when its held events cannot be written at the commit', async () => {
    const before = await store.allEvents(0, 1000);
    await expect(
      store.transaction(async () => {
        await store.agents.enroll({ id: 'h1', publicKey: 'key', labels: {}, mayReplace: false }, AT);
        // jsonb cannot hold a NUL: refused when the held row is written, after everything else was.
        await store.appendEvent({ ...event('test.unwritable'), data: { text: 'a\u0000b' } }, AT);
      }),
    ).rejects.toThrow(/unsupported Unicode escape sequence/);
    expect(await store.allEvents(0, 1000)).toEqual(before);
    expect(await store.agents.get('h1')).toBeUndefined();
    expect(published).toEqual([]);
  });

  it('draws no seq while another coordinator holds the event-order lock: seqs commit in their order across a group', async () => {
    const side = new pg.Client({ connectionString: url });
    await side.connect();
    try {
      const sequence = async () =>
        (await side.query('SELECT last_value, is_called FROM events_seq_seq')).rows[0] as Record<string, unknown>;
      // Another member's transaction has drawn its seqs and holds the lock until it commits.
      await side.query('BEGIN');
      await side.query('SELECT pg_advisory_xact_lock($1)', [EVENT_ORDER_LOCK_KEY]);
      const drawn = await sequence();
      const committing = store.transaction(async () => {
        await store.appendEvent(event('test.after-1'), AT);
        await store.appendEvent(event('test.after-2'), AT);
      });
      // The store's commit waits for the lock, and has drawn nothing meanwhile.
      await expect
        .poll(
          async () =>
            (await side.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"))
              .rows[0].n,
        )
        .toBe(1);
      expect(await sequence()).toEqual(drawn);
      expect(published).toEqual([]);
      await side.query('COMMIT');
      await committing;
      expect(published.map((e) => e.type)).toEqual(['test.after-1', 'test.after-2']);
    } finally {
      await side.end();
    }
  });

  /** A bare executor and event repository, the savepoints written by hand; closed after `run`. */
  async function onExecutor(run: (executor: PostgresExecutor, events: PostgresEventRepository) => Promise<void>) {
    const executor = new PostgresExecutor(url, 1);
    try {
      await run(executor, new PostgresEventRepository(executor));
    } finally {
      await executor.close();
    }
  }
  const types = (records: EventRecord[]) => records.map((e) => e.type);

  it('writes nothing at a savepoint: what a rollback to it undoes is dropped, the rest written at the commit in one statement', async () => {
    await onExecutor(async (executor, events) => {
      const before = (await events.pageAll(0, 1000)).at(-1)?.seq ?? 0;
      sent = [];
      await executor.inTransaction(async () => {
        await events.append(event('test.kept'), AT);
        await executor.query('SAVEPOINT attempt');
        await events.append(event('test.undone'), AT);
        await executor.query('ROLLBACK TO SAVEPOINT attempt');
        await events.append(event('test.after'), AT);
        await executor.query('RELEASE SAVEPOINT attempt');
        await executor.query('SAVEPOINT attempt');
        await events.append(event('test.released'), AT);
        await executor.query('RELEASE SAVEPOINT attempt');
        expect(inserts()).toBe(0); // so the event-order lock is not taken before the commit
      });
      expect(inserts()).toBe(1);
      expect(types(await events.pageAll(before, 1000))).toEqual(['test.kept', 'test.after', 'test.released']);
    });
  });

  it('holds again what a read inside a savepoint wrote, when the savepoint is rolled back: written at the commit, seqs drawn anew', async () => {
    await onExecutor(async (executor, events) => {
      const before = (await events.pageAll(0, 1000)).at(-1)?.seq ?? 0;
      const kept = await events.append(event('test.kept'), AT);
      let seenInside: string[] = [];
      let seenAfter: string[] = [];
      let seqInside = 0;
      await executor.inTransaction(async () => {
        const outer = await events.append(event('test.outer'), AT);
        await executor.query('SAVEPOINT attempt');
        await events.append(event('test.inner'), AT);
        // The read sees both, so both are written inside the savepoint...
        seenInside = types(await events.pageAll(before, 1000));
        seqInside = outer.seq;
        // ...and the rollback undoes both writes: the outer event is held again, the inner one dropped.
        await executor.query('ROLLBACK TO SAVEPOINT attempt');
        expect(outer.seq).toBe(0);
        seenAfter = types(await events.pageAll(before, 1000));
        await executor.query('RELEASE SAVEPOINT attempt');
      });
      expect(seenInside).toEqual(['test.kept', 'test.outer', 'test.inner']);
      expect(seqInside).toBeGreaterThan(kept.seq);
      expect(seenAfter).toEqual(['test.kept', 'test.outer']);
      const written = await events.pageAll(before, 1000);
      expect(types(written)).toEqual(['test.kept', 'test.outer']);
      expect(written[1]?.seq).toBeGreaterThan(seqInside); // the undone draw is not reused
    });
  });

  it('follows nested savepoints by name: a release closes the ones opened after it, a rollback keeps its own open', async () => {
    await onExecutor(async (executor, events) => {
      const before = (await events.pageAll(0, 1000)).at(-1)?.seq ?? 0;
      await executor.inTransaction(async () => {
        await executor.query('SAVEPOINT outer_one');
        // The first event of the transaction, after a savepoint opened: rolled back to it, it goes.
        await events.append(event('test.first'), AT);
        await executor.query('SAVEPOINT inner_one');
        await events.append(event('test.second'), AT);
        await executor.query('ROLLBACK TO SAVEPOINT outer_one');
        await events.append(event('test.third'), AT);
        await executor.query('SAVEPOINT inner_one');
        await events.append(event('test.fourth'), AT);
        await executor.query('RELEASE SAVEPOINT outer_one'); // inner_one with it
        await executor.query('SAVEPOINT last_one');
        await events.append(event('test.fifth'), AT);
        await executor.query('ROLLBACK TO SAVEPOINT last_one');
        await events.append(event('test.sixth'), AT);
        await executor.query('ROLLBACK TO SAVEPOINT last_one'); // still open: rolled back to twice
      });
      expect(types(await events.pageAll(before, 1000))).toEqual(['test.third', 'test.fourth']);
    });
  });

  it('holds again what a failed write inside a savepoint took with it: rolled back to, the event before it is written once at the commit', async () => {
    await onExecutor(async (executor, events) => {
      const before = (await events.pageAll(0, 1000)).at(-1)?.seq ?? 0;
      await executor.inTransaction(async () => {
        await events.append(event('test.kept'), AT);
        await executor.query('SAVEPOINT attempt');
        await events.append(event('test.unwritable'), 'not a time');
        // The read writes both first, and that write fails: the transaction takes nothing but the rollback.
        await expect(events.pageAll(before, 1000)).rejects.toThrow();
        await executor.query('ROLLBACK TO SAVEPOINT attempt');
        await executor.query('RELEASE SAVEPOINT attempt');
      });
      expect(types(await events.pageAll(before, 1000))).toEqual(['test.kept']);
    });
  });

  it('nests attempts of the same savepoint name: the published events are the written ones, seqs and all', async () => {
    const before = (await store.allEvents(0, 1000)).at(-1)?.seq ?? 0;
    await store.transaction(async () => {
      await store.appendEvent(event('test.a'), AT);
      await store.attempt(async () => {
        await store.appendEvent(event('test.b'), AT);
        await expect(
          store.attempt(async () => {
            await store.appendEvent(event('test.undone-inner'), AT);
            await store.allEvents(before, 1000);
            throw new Error('inner refused');
          }),
        ).rejects.toThrow('inner refused');
        await store.allEvents(before, 1000);
      });
      await expect(
        store.attempt(async () => {
          await store.appendEvent(event('test.undone-outer'), AT);
          await store.allEvents(before, 1000);
          throw new Error('outer refused');
        }),
      ).rejects.toThrow('outer refused');
    });
    const written = await store.allEvents(before, 1000);
    expect(types(written)).toEqual(['test.a', 'test.b']);
    expect(published).toEqual(written);
  });

  it('refuses a savepoint statement it cannot follow (a quoted name), before sending it', async () => {
    await onExecutor(async (executor) => {
      sent = [];
      await expect(executor.inTransaction(() => executor.query('SAVEPOINT "Odd name"'))).rejects.toThrow(
        /a savepoint statement the store cannot follow/,
      );
      expect(sent.filter((text) => text.includes('Odd name'))).toEqual([]);
    });
  });

  it('publishes a shared transaction’s events with the seqs they were written with: an attempt undone alone', async () => {
    const before = (await store.allEvents(0, 1000)).at(-1)?.seq ?? 0;
    await store.transaction(async () => {
      await store.attempt(() => store.appendEvent(event('test.kept-1'), AT));
      await expect(
        store.attempt(async () => {
          await store.appendEvent(event('test.undone'), AT);
          await store.allEvents(before, 1000); // a read inside: written, then undone
          throw new Error('refused');
        }),
      ).rejects.toThrow('refused');
      await store.attempt(() => store.appendEvent(event('test.kept-2'), AT));
    });
    const written = await store.allEvents(before, 1000);
    expect(types(written)).toEqual(['test.kept-1', 'test.kept-2']);
    expect(published).toEqual(written);
  });
});
