import { SavepointLost } from './repositories.js';
import type { Store } from './store.js';

interface Waiting<I, O> {
  input: I;
  resolve(output: O): void;
  reject(err: unknown): void;
}

type Outcome<O> = { ok: true; value: O } | { ok: false; error: unknown };

/**
 * Writes one transaction takes at most. Each is a savepoint, on PostgreSQL a subtransaction: past 64
 * that wrote, a transaction overflows its backend's cache of them, and until it ends every other
 * backend's snapshot must look its rows up the slow way (pg_subtrans).
 */
const DEFAULT_MAX_PER_COMMIT = 64;

/**
 * Writes that arrive in the same turn of the event loop share one transaction, and so one commit:
 * on a disk each commit is a sync, and a sync per write made the store, not the CPU, the bound of
 * a fleet enrolling at once (10,000 first starts took ~2× as long with the store on a disk).
 *
 * Each write still has a fate of its own. It runs in a savepoint of the shared transaction: one
 * that throws is rolled back alone (its rows, events and callbacks; see `Store.attempt`) and its
 * caller gets its error, while the others commit. Every caller is answered only after the commit,
 * as with a transaction of its own. A write alone in its turn runs without a savepoint, exactly as
 * it would in `store.transaction()`. Nothing is held back for company: a write waits for the end of
 * its turn (a `setImmediate`), or for this one's transaction in flight, which it would have waited
 * for in the store's queue of transactions anyway.
 *
 * On PostgreSQL the rows a transaction locks are held to its commit, and another coordinator's
 * shared transaction may want the same ones. Writes run in the order `lockOrder` gives, the same on
 * every coordinator, so two batches take the rows that order ranks (join tokens) in one order; audit
 * rows are written at the commit, savepoints or not (postgres-executor.ts), so the group's
 * event-order lock is taken last unless a write reads the events table. Rows outside that order (a
 * host enrolled under two tokens at two coordinators at once) can still close a cycle: PostgreSQL
 * then refuses one side with a deadlock, and a write refused so, or whose whole transaction was, is
 * run once more, alone, after its batch.
 */
export class SharedCommit<I, O> {
  private waiting: Waiting<I, O>[] = [];
  private scheduled = false;
  /** A shared transaction of this one is running: what arrives meanwhile waits for it, and goes in the next together. */
  private committing = false;

  constructor(
    private readonly store: Store,
    /** One write, run inside the shared transaction: it must not wait on anything but the store. */
    private readonly write: (input: I) => Promise<O>,
    /** The order writes run in within a transaction (see above); by default, their arrival's. */
    private readonly lockOrder?: (a: I, b: I) => number,
    private readonly maxPerCommit = DEFAULT_MAX_PER_COMMIT,
  ) {}

  /**
   * Resolves with the write's result once the transaction that holds it has committed. Refused inside
   * a store transaction: the shared one would queue behind the caller's, which waits for it.
   */
  submit(input: I): Promise<O> {
    if (this.store.inTransaction())
      return Promise.reject(new Error('SharedCommit.submit must not be called inside Store.transaction()'));
    return new Promise<O>((resolve, reject) => {
      this.waiting.push({ input, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.committing) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.commitNext();
    });
  }

  /**
   * One shared transaction at a time: while one waits on its database (PostgreSQL's round trips), the
   * writes that arrive meanwhile gather for the next, so a slower store commits more at once.
   */
  private async commitNext(): Promise<void> {
    const batch = this.waiting.splice(0, this.maxPerCommit);
    const { lockOrder } = this;
    if (lockOrder) batch.sort((a, b) => lockOrder(a.input, b.input));
    this.committing = true;
    try {
      await this.commit(batch);
    } finally {
      this.committing = false;
      if (this.waiting.length > 0) this.schedule();
    }
  }

  private async commit(batch: readonly Waiting<I, O>[]): Promise<void> {
    const outcomes: Outcome<O>[] = [];
    try {
      await this.store.transaction(async () => {
        const [only] = batch;
        if (batch.length === 1 && only !== undefined) {
          outcomes.push({ ok: true, value: await this.write(only.input) });
          return;
        }
        for (const { input } of batch) {
          try {
            outcomes.push({ ok: true, value: await this.store.attempt(() => this.write(input)) });
          } catch (err) {
            if (err instanceof SavepointLost) throw err;
            outcomes.push({ ok: false, error: err });
          }
        }
      });
    } catch (err) {
      // Nothing committed, and every answer is the transaction's: a write refused on its own may have
      // been refused for what an earlier one wrote (the last use of a join token), which never committed.
      if (isDeadlock(err)) await this.eachAlone(batch);
      else for (const waiting of batch) waiting.reject(err);
      return;
    }
    const again: Waiting<I, O>[] = [];
    batch.forEach((waiting, i) => {
      const outcome = outcomes[i] as Outcome<O>;
      if (outcome.ok) waiting.resolve(outcome.value);
      else if (isDeadlock(outcome.error)) again.push(waiting);
      else waiting.reject(outcome.error);
    });
    await this.eachAlone(again);
  }

  /** Runs each write once more in a transaction of its own (see above), and answers its caller. */
  private async eachAlone(writes: readonly Waiting<I, O>[]): Promise<void> {
    for (const { input, resolve, reject } of writes) {
      await this.store.transaction(() => this.write(input)).then(resolve, reject);
    }
  }
}

/** PostgreSQL's SQLSTATE for a transaction it chose to break a deadlock (SQLite has one writer, and none). */
const DEADLOCK_DETECTED = '40P01';

function isDeadlock(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === DEADLOCK_DETECTED;
}
