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
 * Where a PostgreSQL repository's queries go: the transaction's connection while
 * `inTransaction`'s function runs (its async context says so), any pooled connection outside one.
 */
export class PostgresExecutor {
  private readonly transactionClient = new AsyncLocalStorage<pg.PoolClient>();
  readonly pool: pg.Pool;

  constructor(url: string, poolSize = 10) {
    this.pool = new pg.Pool({ connectionString: url, max: poolSize, types: storeTypes, options: '-c TimeZone=UTC' });
    // An idle pooled connection that breaks (the server restarts) is dropped by the pool; without a
    // listener its error would be thrown as an uncaught exception and end the coordinator.
    this.pool.on('error', () => {});
  }

  async query<R extends pg.QueryResultRow>(text: string, values?: readonly unknown[]): Promise<R[]> {
    const on = this.transactionClient.getStore() ?? this.pool;
    return (await on.query<R>(text, values as unknown[] | undefined)).rows;
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
      const result = await this.transactionClient.run(client, fn);
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
