import type { ClientBase } from 'pg';
import type { Db } from '../database.js';
import { type SqliteTable, sqliteTables } from '../sqlite-catalog.js';
import { type PostgresColumn, type PostgresTable, postgresTables, referencedFirst } from './postgres-catalog.js';
import { migratePostgresWithin } from './postgres-migrate.js';
import { GROUP_TABLES, POSTGRES_MIGRATIONS } from './postgres-migrations.js';

/** The schemas' own version tables: each store keeps its own history, they are not copied. */
const VERSION_TABLE = 'schema_migrations';
/** PostgreSQL takes at most 65,535 parameters a statement; rows go in batches under that. */
const MAX_PARAMETERS = 60_000;
const MAX_BATCH_ROWS = 1_000;

export interface CopiedTable {
  readonly table: string;
  readonly rows: number;
}

/** Why a copy was refused or failed; nothing was written to the target either way. */
export class StoreCopyError extends Error {
  override readonly name = 'StoreCopyError';
}

/**
 * Copies every table of a coordinator's SQLite store into a PostgreSQL database, in one
 * transaction on each side: a consistent snapshot of the source is read (a coordinator still
 * writing to it would lose what it writes after that: stop it first), and the target either holds
 * all of it, row counts checked table by table, or nothing — not even the schema, which is
 * migrated in the same transaction. A target that already holds rows is refused, so a second run
 * cannot double anything. Sequence numbers (events, measurements, dictionary ids, the rowids
 * standing in for SQLite's) are kept, and each sequence is moved past what SQLite handed out.
 */
export async function copySqliteToPostgres(source: Db, target: ClientBase): Promise<CopiedTable[]> {
  // One read transaction: the schema checked and every row copied come from the same snapshot.
  source.exec('BEGIN');
  try {
    const sourceTables = readSourceSchema(source);
    return await copyWithin(source, sourceTables, target);
  } finally {
    source.exec('COMMIT');
  }
}

async function copyWithin(
  source: Db,
  sourceTables: readonly SqliteTable[],
  target: ClientBase,
): Promise<CopiedTable[]> {
  await target.query('BEGIN');
  try {
    // Timestamps without a zone (none the coordinator writes) would otherwise take the server's.
    await target.query("SET LOCAL TimeZone = 'UTC'");
    await migratePostgresWithin(target);
    // The group's tables (leases, outbox, presence) have no SQLite twin: a SQLite store has one coordinator.
    const targetTables = referencedFirst(
      (await postgresTables(target)).filter((t) => t.name !== VERSION_TABLE && !GROUP_TABLES.includes(t.name)),
    );
    checkSameTables(sourceTables, targetTables);
    // No coordinator may write to the target while it is checked empty and filled.
    await target.query(`LOCK TABLE ${targetTables.map((t) => quoted(t.name)).join(', ')} IN ACCESS EXCLUSIVE MODE`);
    await refuseNonEmpty(target, targetTables);
    const copied: CopiedTable[] = [];
    for (const table of targetTables) {
      const sourceTable = sourceTables.find((t) => t.name === table.name) as SqliteTable;
      const rows = await copyTable(source, sourceTable, target, table);
      await verifyCount(source, target, table.name, rows);
      await moveSequencesPast(source, target, table);
      copied.push({ table: table.name, rows });
    }
    await target.query('COMMIT');
    return copied;
  } catch (err) {
    await target.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

function readSourceSchema(source: Db): SqliteTable[] {
  const tables = sqliteTables(source);
  if (!tables.some((t) => t.name === VERSION_TABLE)) {
    throw new StoreCopyError('the SQLite file is not a fleetpatch store: it has no schema_migrations table');
  }
  const version = source.prepare(`SELECT max(version) FROM ${VERSION_TABLE}`).pluck().get() as number | null;
  const expected = POSTGRES_MIGRATIONS.at(-1)?.sqliteVersion ?? 0;
  if (version !== expected) {
    throw new StoreCopyError(
      (version ?? 0) < expected
        ? `the SQLite store is at schema version ${version ?? 0}, this coordinator's is ${expected}: start this version's coordinator on it once (it brings the file up to date), stop it, then run migrate-store again`
        : `the SQLite store is at schema version ${version}, newer than this coordinator's ${expected}: run the migrate-store of the version that wrote it`,
    );
  }
  return tables.filter((t) => t.name !== VERSION_TABLE);
}

function checkSameTables(source: readonly SqliteTable[], target: readonly PostgresTable[]): void {
  const sourceNames = source.map((t) => t.name);
  const targetNames = target.map((t) => t.name);
  const onlySource = sourceNames.filter((n) => !targetNames.includes(n));
  const onlyTarget = targetNames.filter((n) => !sourceNames.includes(n));
  if (onlySource.length > 0 || onlyTarget.length > 0) {
    throw new StoreCopyError(
      `the two schemas differ: only in SQLite [${onlySource.join(', ')}], only in PostgreSQL [${onlyTarget.join(', ')}]`,
    );
  }
}

async function refuseNonEmpty(target: ClientBase, tables: readonly PostgresTable[]): Promise<void> {
  const counts = await rowCounts(target, tables);
  const filled = counts.filter((c) => c.rows > 0);
  if (filled.length > 0) {
    throw new StoreCopyError(
      `the PostgreSQL database is not empty (${filled.map((c) => `${c.table}: ${c.rows} rows`).join(', ')}): migrate-store copies into an empty store only; nothing was changed`,
    );
  }
}

async function rowCounts(target: ClientBase, tables: readonly PostgresTable[]): Promise<CopiedTable[]> {
  const sql = tables.map((t) => `SELECT '${t.name}' AS name, count(*) AS rows FROM ${quoted(t.name)}`);
  const result = await target.query<{ name: string; rows: string }>(sql.join(' UNION ALL '));
  return result.rows.map((r) => ({ table: r.name, rows: Number(r.rows) }));
}

/** Streams one table across in multi-row INSERTs; returns how many rows it wrote. */
async function copyTable(source: Db, from: SqliteTable, target: ClientBase, to: PostgresTable): Promise<number> {
  const sourceColumns = new Set(from.columns.map((c) => c.name));
  for (const column of to.columns) {
    const readable = sourceColumns.has(column.name) || (column.name === 'rowid' && from.implicitRowid);
    if (!readable) throw new StoreCopyError(`${to.name}.${column.name} has no counterpart in the SQLite store`);
  }
  for (const column of from.columns) {
    if (!to.columns.some((c) => c.name === column.name)) {
      throw new StoreCopyError(`${from.name}.${column.name} has no counterpart in the PostgreSQL store`);
    }
  }
  const names = to.columns.map((c) => quoted(c.name));
  const select = source
    .prepare(`SELECT ${names.join(', ')} FROM ${quoted(from.name)}`)
    .raw(true)
    .safeIntegers(true);
  const batchRows = Math.max(1, Math.min(MAX_BATCH_ROWS, Math.floor(MAX_PARAMETERS / to.columns.length)));
  let batch: unknown[][] = [];
  let written = 0;
  const flush = async () => {
    if (batch.length === 0) return;
    const tuples = batch.map(
      (_, row) => `(${to.columns.map((_c, column) => `$${row * to.columns.length + column + 1}`).join(', ')})`,
    );
    const insert = `INSERT INTO ${quoted(to.name)} (${names.join(', ')}) VALUES ${tuples.join(', ')}`;
    try {
      await target.query(insert, batch.flat());
    } catch (err) {
      // The server names the bad value (a malformed timestamp, JSON jsonb refuses) but not the table.
      throw new StoreCopyError(`${to.name}: PostgreSQL refused a row: ${(err as Error).message}`);
    }
    written += batch.length;
    batch = [];
  };
  for (const row of select.iterate() as Iterable<unknown[]>) {
    batch.push(row.map((value, i) => toPostgres(value, to.columns[i] as PostgresColumn, to.name)));
    if (batch.length >= batchRows) await flush();
  }
  await flush();
  return written;
}

/**
 * One SQLite value as the PostgreSQL column takes it. SQLite stored whatever it was given, so what
 * PostgreSQL's types would refuse is named here (table, column, value) rather than in a bare
 * server error; jsonb and timestamptz text is parsed by the server, which names a bad one.
 */
function toPostgres(value: unknown, column: PostgresColumn, table: string): unknown {
  if (value === null) return null;
  const where = `${table}.${column.name}`;
  if (value instanceof Uint8Array) throw new StoreCopyError(`${where} holds a blob, which the store never writes`);
  if (column.type === 'boolean') {
    if (value === 0n || value === 1n) return value === 1n;
    throw new StoreCopyError(`${where} is a 0/1 flag but holds ${String(value)}`);
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'string' && value.includes('\u0000')) {
    throw new StoreCopyError(`${where} holds a NUL character, which PostgreSQL text cannot`);
  }
  return value;
}

async function verifyCount(source: Db, target: ClientBase, table: string, copied: number): Promise<void> {
  const inSource = Number(
    source
      .prepare(`SELECT count(*) FROM ${quoted(table)}`)
      .pluck()
      .get(),
  );
  const inTarget = Number((await target.query<{ n: string }>(`SELECT count(*) AS n FROM ${quoted(table)}`)).rows[0]?.n);
  if (inSource !== copied || inTarget !== copied) {
    throw new StoreCopyError(`${table}: ${inSource} rows in SQLite, ${copied} copied, ${inTarget} in PostgreSQL`);
  }
}

/**
 * The next number each identity column hands out is past every number SQLite handed out: past the
 * copied rows, and past an AUTOINCREMENT table's sqlite_sequence, which remembers numbers of rows
 * since deleted (an event seq is never reused: readers resume from one).
 */
async function moveSequencesPast(source: Db, target: ClientBase, table: PostgresTable): Promise<void> {
  for (const column of table.columns.filter((c) => c.identity)) {
    const copiedMax = (
      await target.query<{ max: string | null }>(
        `SELECT max(${quoted(column.name)})::text AS max FROM ${quoted(table.name)}`,
      )
    ).rows[0]?.max;
    const handedOut = hasSqliteSequence(source)
      ? (source.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').safeIntegers(true).pluck().get(table.name) as
          | bigint
          | undefined)
      : undefined;
    const last = [BigInt(copiedMax ?? 0), handedOut ?? 0n].reduce((a, b) => (a > b ? a : b));
    if (last === 0n) continue;
    await target.query('SELECT setval(pg_get_serial_sequence($1, $2), $3, true)', [
      quoted(table.name),
      column.name,
      last.toString(),
    ]);
  }
}

function hasSqliteSequence(source: Db): boolean {
  return source.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").get() !== undefined;
}

function quoted(identifier: string): string {
  return `"${identifier.replaceAll('"', '""')}"`;
}
