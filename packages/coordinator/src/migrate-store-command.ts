import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import pg from 'pg';
import { copySqliteToPostgres, StoreCopyError } from './store/postgres/sqlite-to-postgres.js';

export const MIGRATE_STORE_USAGE = `usage: fleetpatch-coordinator migrate-store --from sqlite:FILE --to postgres:URL

Copies every table of a coordinator's SQLite store (FILE, e.g. /var/lib/fleetpatch/fleetpatch.db)
into an empty PostgreSQL database (URL, e.g. postgres://fleetpatch@db.example:5432/fleetpatch),
creating its schema, in one transaction: all of it arrives, row counts checked table by table, or
nothing does. Stop the coordinator first: what it writes after the copy starts is not copied. The
SQLite file is only read. A database that already holds rows is refused.

Exit status: 0 copied, 1 refused or failed (the target is unchanged), 2 bad arguments.`;

interface Arguments {
  readonly sqliteFile: string;
  readonly postgresUrl: string;
}

class UsageError extends Error {}

/** Runs `fleetpatch-coordinator migrate-store …`; returns the exit status. */
export async function runMigrateStore(
  argv: readonly string[],
  out: (text: string) => void,
  err: (text: string) => void,
): Promise<number> {
  let args: Arguments | 'help';
  try {
    args = parse(argv);
  } catch (e) {
    err(`fleetpatch-coordinator migrate-store: ${(e as Error).message}\n${MIGRATE_STORE_USAGE}\n`);
    return 2;
  }
  if (args === 'help') {
    out(`${MIGRATE_STORE_USAGE}\n`);
    return 0;
  }
  const target = withoutPassword(args.postgresUrl);
  let source: Database.Database;
  try {
    source = openSource(args.sqliteFile);
  } catch (e) {
    err(`fleetpatch-coordinator migrate-store: cannot open ${args.sqliteFile}: ${(e as Error).message}\n`);
    return 1;
  }
  const client = new pg.Client({ connectionString: args.postgresUrl, connectionTimeoutMillis: 15_000 });
  const started = performance.now();
  try {
    await client.connect();
    const copied = await copySqliteToPostgres(source, client);
    const seconds = (performance.now() - started) / 1000;
    const width = Math.max(5, ...copied.map((c) => c.table.length));
    const total = copied.reduce((sum, c) => sum + c.rows, 0);
    out(`copied ${args.sqliteFile} into ${target}\n`);
    out(`${'table'.padEnd(width)}  ${'rows'.padStart(10)}\n`);
    for (const c of copied) out(`${c.table.padEnd(width)}  ${String(c.rows).padStart(10)}\n`);
    out(`${'total'.padEnd(width)}  ${String(total).padStart(10)}  (${seconds.toFixed(1)} s, row counts verified)\n`);
    return 0;
  } catch (e) {
    const why = e instanceof StoreCopyError ? e.message : `${target}: ${(e as Error).message}`;
    err(`fleetpatch-coordinator migrate-store: ${why}\nnothing was copied\n`);
    return 1;
  } finally {
    source.close();
    await client.end().catch(() => undefined);
  }
}

/** Read-only: whatever happens, the installation being moved stays as it was. */
function openSource(file: string): Database.Database {
  const source = new Database(file, { readonly: true, fileMustExist: true });
  try {
    // SQLite reads the file lazily: a file that is not a database is said here, not as the target's fault.
    source.pragma('schema_version');
    return source;
  } catch (e) {
    source.close();
    throw e;
  }
}

function parse(argv: readonly string[]): Arguments | 'help' {
  const { values } = parseArgs({
    args: [...argv],
    options: { from: { type: 'string' }, to: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) return 'help';
  if (values.from === undefined) throw new UsageError('--from sqlite:FILE is required');
  if (values.to === undefined) throw new UsageError('--to postgres:URL is required');
  if (!values.from.startsWith('sqlite:') || values.from.length === 'sqlite:'.length) {
    throw new UsageError(`--from must be sqlite:FILE, not "${values.from}"`);
  }
  const sqliteFile = values.from.slice('sqlite:'.length);
  if (!existsSync(sqliteFile)) throw new UsageError(`--from: no such file: ${sqliteFile}`);
  return { sqliteFile, postgresUrl: postgresUrlOf(values.to) };
}

/** `postgres:postgres://…` as the usage says, or the bare `postgres://…` / `postgresql://…` URL. */
function postgresUrlOf(value: string): string {
  const url = /^postgres(ql)?:\/\//.test(value) ? value : value.startsWith('postgres:') ? value.slice(9) : undefined;
  if (url === undefined || !/^postgres(ql)?:\/\/[^/]/.test(url)) {
    throw new UsageError(`--to must be postgres:URL with URL postgres://USER@HOST:PORT/DATABASE, not "${value}"`);
  }
  try {
    new URL(url);
  } catch {
    throw new UsageError(`--to: not a URL: "${withoutPassword(url)}"`);
  }
  return url;
}

/** The URL to print: never the password. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString();
  } catch {
    return url.replace(/:[^:@/]*@/, ':***@');
  }
}
