import { AsyncLocalStorage } from 'node:async_hooks';
import pg from 'pg';

/** PostgreSQL's type ids the store reads differently from `pg`'s defaults. */
const INT8 = 20;
const TIMESTAMPTZ = 1184;

/**
 * The store reads what SQLite gave it: timestamps as the ISO strings the coordinator wrote
 * (`Date.toISOString()`, UTC, milliseconds), and bigint columns (ms epochs, counts) as numbers —
 * every one of them is far below 2^53.
 */
const storeTypes = {
  getTypeParser(id: number, format?: 'text' | 'binary') {
    if (id === TIMESTAMPTZ) return (text: string) => isoFromPostgres(text);
    if (id === INT8) return (text: string) => Number(text);
    return pg.types.getTypeParser(id, format);
  },
} as pg.CustomTypesConfig;

/** `2026-12-04 15:00:00.123+00` (PostgreSQL's text form, session time zone UTC) → `2026-12-04T15:00:00.123Z`. */
export function isoFromPostgres(text: string): string {
  return new Date(text.replace(' ', 'T').replace(/([+-]\d\d)$/, '$1:00')).toISOString();
}

/**
 * Rows a repository holds back within a transaction to write them in one statement, a round trip for
 * all of them instead of one each: written before the transaction commits, and before any statement of
 * the same transaction that must see them (`mustPrecede`), so the transaction reads as if each had
 * been written when it was asked for.
 */
export interface HeldWrites {
  /** Whether `text`, about to run in the same transaction, must see the held rows. */
  mustPrecede(text: string): boolean;
  /** Writes the held rows (none held: nothing) and forgets them. */
  flush(): Promise<void>;
  /** Forgets the held rows unwritten: a rollback to a savepoint undid them. */
  discard(): void;
}

/**
 * A statement that opens or releases a savepoint: every held write goes before it, so what a
 * savepoint's rollback undoes is what it would have undone had the rows been written at once.
 */
const SAVEPOINT_STATEMENT = /^\s*(SAVEPOINT|RELEASE)\b/i;
/**
 * A rollback to a savepoint: the rows held then were all made after the last savepoint statement
 * (each one flushed what came before), so inside the savepoint rolled back to, and it undoes them.
 * They are dropped, not written: after a failed statement the transaction accepts no write but this.
 */
const ROLLBACK_TO_STATEMENT = /^\s*ROLLBACK\s+TO\b/i;

/** A transaction's connection and the writes held back in it, by their owner. */
interface TransactionScope {
  client: pg.PoolClient;
  held: Map<object, HeldWrites>;
}

/**
 * Where a PostgreSQL repository's queries go: the transaction's connection while
 * `inTransaction`'s function runs (its async context says so), any pooled connection outside one.
 */
export class PostgresExecutor {
  private readonly transaction = new AsyncLocalStorage<TransactionScope>();
  readonly pool: pg.Pool;

  constructor(url: string, poolSize = 10) {
    this.pool = new pg.Pool({ connectionString: url, max: poolSize, types: storeTypes, options: '-c TimeZone=UTC' });
    // An idle pooled connection that breaks (the server restarts) is dropped by the pool; without a
    // listener its error would be thrown as an uncaught exception and end the coordinator.
    this.pool.on('error', () => {});
  }

  async query<R extends pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<R[]> {
    const scope = this.transaction.getStore();
    if (scope === undefined) return (await this.pool.query<R>(text, values as unknown[] | undefined)).rows;
    if (ROLLBACK_TO_STATEMENT.test(text)) for (const held of scope.held.values()) held.discard();
    const boundary = SAVEPOINT_STATEMENT.test(text);
    for (const held of scope.held.values()) if (boundary || held.mustPrecede(text)) await held.flush();
    return (await scope.client.query<R>(text, values as unknown[] | undefined)).rows;
  }

  /**
   * The writes `owner` holds back in the running transaction, made by `create` on its first call in
   * it; `undefined` outside a transaction (the caller writes at once).
   */
  heldWrites<H extends HeldWrites>(owner: object, create: () => H): H | undefined {
    const scope = this.transaction.getStore();
    if (scope === undefined) return undefined;
    let held = scope.held.get(owner);
    if (held === undefined) {
      held = create();
      scope.held.set(owner, held);
    }
    return held as H;
  }

  async one<R extends pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<R | undefined> {
    return (await this.query<R>(text, values))[0];
  }

  /** Whether a conditional write (`… WHERE … RETURNING …`) changed its one row. */
  async changedOne(text: string, values?: readonly unknown[]): Promise<boolean> {
    return (await this.query(text, values)).length === 1;
  }

  /** BEGIN … COMMIT around `fn` on one connection; ROLLBACK when it throws. */
  async inTransaction<T>(fn: () => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken = false;
    // A connection the server ends while it is checked out (a restart between two statements)
    // emits 'error' on the client; without a listener that would end the coordinator. The
    // transaction's next statement fails instead, and the caller retries.
    const onError = () => {
      broken = true;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const scope: TransactionScope = { client, held: new Map() };
      const result = await this.transaction.run(scope, async () => {
        const result = await fn();
        for (const held of scope.held.values()) await held.flush();
        return result;
      });
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true; // the connection is gone: it must not go back to the pool
      });
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
