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
 *
 * Savepoints do not write them: a savepoint opening marks where the held rows stand (`mark`), and a
 * rollback to it puts them back as they stood then (`rollBackTo`). So held rows are written at the
 * commit even in a transaction of savepoints, and the locks their write takes (the audit log's
 * event-order lock) are taken last, after every row lock of the transaction, as in one without —
 * unless a statement of the transaction reads the events table, which writes them first.
 */
export interface HeldWrites {
  /** Whether `text`, about to run in the same transaction, must see the held rows. */
  mustPrecede(text: string): boolean;
  /** Writes the held rows (none held: nothing). */
  flush(): Promise<void>;
  /** Where the rows stand as a savepoint opens: what `rollBackTo` comes back to. */
  mark(): unknown;
  /**
   * Rolled back to the savepoint `mark` was taken at (`undefined`: one opened before this was made):
   * rows held since are dropped, and rows held before it but written since (the rollback undid their
   * write) are held again.
   */
  rollBackTo(mark: unknown): void;
}

/** A statement that opens, releases or rolls back to a savepoint, and its name. */
const SAVEPOINT_STATEMENT = /^\s*(SAVEPOINT|RELEASE(?:\s+SAVEPOINT)?|ROLLBACK\s+TO(?:\s+SAVEPOINT)?)\s+(\w+)\s*$/i;
/** Any statement about a savepoint: one not in the form above would go past the held rows' marks unseen. */
const ABOUT_A_SAVEPOINT = /^\s*(SAVEPOINT|RELEASE|ROLLBACK\s+TO)\b/i;

type SavepointVerb = 'SAVEPOINT' | 'RELEASE' | 'ROLLBACK';

/** An open savepoint: its name, and where each holder's rows stood when it opened. */
interface OpenSavepoint {
  name: string;
  marks: Map<object, unknown>;
}

/** A transaction's connection, the writes held back in it by their owner, and its open savepoints. */
interface TransactionScope {
  client: pg.PoolClient;
  held: Map<object, HeldWrites>;
  savepoints: OpenSavepoint[];
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
    const savepoint = SAVEPOINT_STATEMENT.exec(text);
    if (savepoint === null) {
      if (ABOUT_A_SAVEPOINT.test(text)) throw new Error(`a savepoint statement the store cannot follow: ${text}`);
      for (const held of scope.held.values()) if (held.mustPrecede(text)) await held.flush();
      return (await scope.client.query<R>(text, values as unknown[] | undefined)).rows;
    }
    const rows = (await scope.client.query<R>(text, values as unknown[] | undefined)).rows;
    const [, statement, name] = savepoint as unknown as [string, string, string];
    followSavepoint(scope, statement.split(/\s+/, 1)[0]?.toUpperCase() as SavepointVerb, name);
    return rows;
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
      const scope: TransactionScope = { client, held: new Map(), savepoints: [] };
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

/**
 * Keeps the scope's savepoints as PostgreSQL does, after `verb` on the savepoint `name` succeeded:
 * SAVEPOINT opens one (the held rows marked), RELEASE closes the latest of that name and every one
 * opened after it, ROLLBACK TO closes those opened after it and puts the held rows back as they stood
 * when it opened (it stays open).
 */
function followSavepoint(scope: TransactionScope, verb: SavepointVerb, name: string): void {
  if (verb === 'SAVEPOINT') {
    const marks = new Map<object, unknown>();
    for (const [owner, held] of scope.held) marks.set(owner, held.mark());
    scope.savepoints.push({ name, marks });
    return;
  }
  const at = scope.savepoints.findLastIndex((open) => open.name.toLowerCase() === name.toLowerCase());
  const open = scope.savepoints[at];
  if (open === undefined) return; // PostgreSQL refused the statement: it threw before this
  if (verb === 'RELEASE') {
    scope.savepoints.length = at;
    return;
  }
  scope.savepoints.length = at + 1;
  for (const [owner, held] of scope.held) held.rollBackTo(open.marks.get(owner));
}
