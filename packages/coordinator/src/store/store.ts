import { AsyncLocalStorage } from 'node:async_hooks';
import { APPLY_END_STATES, type EventRecord, type RolloutState } from '@fleetpatch/shared';
import { type Db, openDatabase } from './database.js';
import type { NewEvent } from './event-repository.js';
import { OneAtATime } from './one-at-a-time.js';
import type { Repositories, StateCountsReader, StoreBackend } from './repositories.js';
import { SqliteBackend } from './sqlite-backend.js';

export type EventListener = (event: EventRecord) => void;

/**
 * A host's live phase, as its agent reported it (`order.progress`): not an audit row. The phase is
 * on the host run (status shows it); the notice only tells live readers (the event stream) to look.
 */
export interface ProgressNotice {
  type: 'host.progress';
  rolloutId: string;
  hostId: string;
  state: string;
  at: string;
  message?: string;
}
export type ProgressListener = (notice: ProgressNotice) => void;
/** Told how long each outermost transaction took (seconds) and whether it committed. */
export type TransactionObserver = (seconds: number, committed: boolean) => void;

/** What one transaction has to publish or run once it commits. */
interface TransactionContext {
  open: boolean;
  events: EventRecord[];
  /** One per host run (the latest wins): progress is coalesced per burst. */
  progress: Map<string, ProgressNotice>;
  afterCommits: (() => void)[];
}

/**
 * The coordinator's store: repositories over one database (a `StoreBackend`: SQLite or PostgreSQL), and `transaction()` — the only
 * way domain code writes. Events appended inside a transaction reach live listeners (the SSE stream,
 * webhooks) only after it commits, so nobody is ever told about a change that did not happen.
 */
export class Store {
  private readonly listeners = new Set<EventListener>();
  /** Live readers of every event of the group (the SSE stream), fed by `feedStream` once a tail does. */
  private readonly streamListeners = new Set<EventListener>();
  private streamFedByTail = false;
  private readonly progressListeners = new Set<ProgressListener>();
  /** The transaction in progress, if any: transactions never overlap (see `transaction()`). */
  private readonly context = new AsyncLocalStorage<TransactionContext>();
  /** Transactions run one at a time (one SQLite connection; on PostgreSQL, one per coordinator for now). */
  private readonly transactions = new OneAtATime();
  private transactionObserver: TransactionObserver | null = null;

  constructor(readonly backend: StoreBackend) {}

  /** The SQLite store in `file` (created if need be), its schema brought up to date. */
  static async open(file: string): Promise<Store> {
    const store = new Store(new SqliteBackend(openDatabase(file)));
    await store.patches.backfillDigests();
    await store.patches.backfillSummaries();
    return store;
  }

  /**
   * The PostgreSQL store at `url`, its schema brought up to date first: on one connection, under the
   * migration lock (coordinators starting together migrate once), before any repository reads.
   */
  static async openPostgres(url: string): Promise<Store> {
    // Loaded here, not at the top: a SQLite coordinator never pays for loading pg (~0.15 s of CPU).
    const [{ PostgresExecutor }, { migratePostgres }, { PostgresBackend }] = await Promise.all([
      import('./postgres/postgres-executor.js'),
      import('./postgres/postgres-migrate.js'),
      import('./postgres/postgres-backend.js'),
    ]);
    const executor = new PostgresExecutor(url);
    try {
      const client = await executor.pool.connect();
      try {
        await migratePostgres(client);
      } finally {
        client.release();
      }
      const store = new Store(new PostgresBackend(executor));
      await store.patches.backfillDigests();
      await store.patches.backfillSummaries();
      return store;
    } catch (err) {
      await executor.close();
      throw err;
    }
  }

  get agents(): Repositories['agents'] {
    return this.backend.agents;
  }
  get joinTokens(): Repositories['joinTokens'] {
    return this.backend.joinTokens;
  }
  get patches(): Repositories['patches'] {
    return this.backend.patches;
  }
  get rollouts(): Repositories['rollouts'] {
    return this.backend.rollouts;
  }
  get hostRuns(): Repositories['hostRuns'] {
    return this.backend.hostRuns;
  }
  get inventory(): Repositories['inventory'] {
    return this.backend.inventory;
  }
  get statements(): Repositories['statements'] {
    return this.backend.statements;
  }
  get analyses(): Repositories['analyses'] {
    return this.backend.analyses;
  }
  get stateCounts(): StateCountsReader {
    return this.backend.stateCounts;
  }

  /** The SQLite connection under a SQLite store (tests and tools read it directly); throws on any other. */
  get db(): Db {
    if (!(this.backend instanceof SqliteBackend))
      throw new Error(`a ${this.backend.kind} store has no SQLite connection`);
    return this.backend.db;
  }

  /**
   * Runs `fn` in one IMMEDIATE transaction and resolves with its result once it has committed.
   * Transactions never overlap: one that is called while another runs waits for it — except a call
   * made from inside a transaction's own `fn` (its async context says so), which joins it. `fn`
   * must not wait on anything but the store (no network, no timers): the connection is held.
   */
  async transaction<T>(fn: () => Promise<T>): Promise<T> {
    if (this.context.getStore()?.open) return fn();
    return this.transactions.run(async () => {
      const context: TransactionContext = { open: true, events: [], progress: new Map(), afterCommits: [] };
      const started = performance.now();
      let committed = false;
      try {
        const result = await this.context.run(context, () => this.backend.inTransaction(fn));
        committed = true;
        return result;
      } finally {
        context.open = false;
        this.transactionObserver?.((performance.now() - started) / 1000, committed);
        if (committed) {
          for (const event of context.events) this.publish(event);
          for (const notice of context.progress.values()) this.publishProgress(notice);
          // Outside the transaction: a send that starts another transaction must queue, not join this one.
          this.context.exit(() => this.transactions.outside(() => runAll(context.afterCommits)));
        }
      }
    });
  }

  /** Whether the caller runs inside a transaction of this store (its async context says so). */
  inTransaction(): boolean {
    return this.context.getStore()?.open === true;
  }

  /**
   * Must run inside `transaction()`. Runs `fn` once the outermost transaction has committed, and
   * never if it rolls back: an order is sent only when the row that records it is on disk (a crash
   * in between leaves a committed order for the agent's hello to pick up, never a sent one that is
   * not recorded).
   */
  afterCommit(fn: () => void): void {
    this.current('afterCommit').afterCommits.push(fn);
  }

  /**
   * Must run inside `transaction()`. Runs `fn` as a savepoint of it: when `fn` throws, everything it
   * did is undone — its rows, and the events, progress and after-commit callbacks it added, which are
   * then never published or run — and the transaction goes on without it. For writes that share a
   * commit but not a fate (see SharedCommit).
   */
  async attempt<T>(fn: () => Promise<T>): Promise<T> {
    const context = this.current('attempt');
    const events = context.events.length;
    const afterCommits = context.afterCommits.length;
    const progress = new Map(context.progress);
    try {
      return await this.backend.inSavepoint(fn);
    } catch (err) {
      context.events.length = events;
      context.afterCommits.length = afterCommits;
      context.progress.clear();
      for (const [key, notice] of progress) context.progress.set(key, notice);
      throw err;
    }
  }

  /** Appends an audit event; must run inside `transaction()`. */
  async appendEvent(event: NewEvent, at: string): Promise<EventRecord> {
    const context = this.current('appendEvent');
    const record = await this.backend.events.append(event, at);
    context.events.push(record);
    return record;
  }

  /**
   * Must run inside `transaction()`. Tells live readers about a host's new phase once the transaction
   * commits (never if it rolls back); within one transaction only a host run's latest phase goes out.
   */
  noteProgress(notice: ProgressNotice): void {
    this.current('noteProgress').progress.set(`${notice.rolloutId}\u0000${notice.hostId}`, notice);
  }

  private current(caller: string): TransactionContext {
    const context = this.context.getStore();
    if (!context?.open) throw new Error(`${caller} must run inside Store.transaction()`);
    return context;
  }

  /** How the rollout's apply last came to rest (succeeded, halted or aborted), by its audit trail. */
  async applyEndOf(rolloutId: string): Promise<RolloutState | undefined> {
    return (await this.backend.events.lastRolloutToState(rolloutId, APPLY_END_STATES)) as RolloutState | undefined;
  }

  async events(rolloutId: string, afterSeq: number, limit: number): Promise<EventRecord[]> {
    return await this.backend.events.page(rolloutId, afterSeq, limit);
  }

  async allEvents(afterSeq: number, limit: number): Promise<EventRecord[]> {
    return await this.backend.events.pageAll(afterSeq, limit);
  }

  /** One observer (the metrics); the time is measured around the commit, listeners excluded. */
  observeTransactions(observer: TransactionObserver): void {
    this.transactionObserver = observer;
  }

  onEvent(listener: EventListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * For live readers that must see every event, whichever coordinator of a group committed it (the
   * SSE stream). Alone, a coordinator feeds them its own commits; in a group its event tail feeds
   * them from the database, in `seq` order, its own commits included (so each event comes once).
   */
  onStreamEvent(listener: EventListener): () => void {
    this.streamListeners.add(listener);
    return () => this.streamListeners.delete(listener);
  }

  /** From now on the stream is fed by `feedStream` only (see group/event-tail.ts). */
  feedStreamFromTail(): void {
    this.streamFedByTail = true;
  }

  feedStream(event: EventRecord): void {
    notifyAll(this.streamListeners, event);
  }

  onProgress(listener: ProgressListener): () => void {
    this.progressListeners.add(listener);
    return () => this.progressListeners.delete(listener);
  }

  close(): Promise<void> {
    return this.backend.close();
  }

  private publish(event: EventRecord): void {
    notifyAll(this.listeners, event);
    if (!this.streamFedByTail) notifyAll(this.streamListeners, event);
  }

  private publishProgress(notice: ProgressNotice): void {
    for (const listener of this.progressListeners) {
      try {
        listener(notice);
      } catch {
        // As for events: a failing reader must not break what was committed.
      }
    }
  }
}

function notifyAll(listeners: ReadonlySet<EventListener>, event: EventRecord): void {
  for (const listener of listeners) {
    try {
      listener(event);
    } catch {
      // A failing listener (a closed SSE client) must not break the transition that was committed.
    }
  }
}

/**
 * Runs every callback even when one throws (the transaction is committed either way, so the others'
 * sends must still go), then rethrows the first error so the caller does not hide it.
 */
function runAll(callbacks: readonly (() => void)[]): void {
  let first: unknown;
  let failed = false;
  for (const callback of callbacks) {
    try {
      callback();
    } catch (err) {
      if (!failed) first = err;
      failed = true;
    }
  }
  if (failed) throw first;
}
