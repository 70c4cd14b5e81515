import { ErrorCode, FleetError } from '@fleetpatch/shared';

/**
 * A full disk under the coordinator is an operator's problem with a plain fix, not an internal
 * error: SQLite answers SQLITE_FULL (better-sqlite3 puts it in `code`) and rolls the statement or
 * transaction back, PostgreSQL answers SQLSTATE 53100 (disk_full; node-postgres puts it in `code`)
 * and aborts the transaction, a file write answers ENOSPC or EDQUOT. Either way nothing of the
 * request was committed, so the client is told to come back once space is freed — and what was
 * full, so the operator knows where to look. Anything else is not this error.
 */
const COORDINATOR_DATA_DIR = "the coordinator's data dir";
const FULL_CODES: ReadonlyMap<string, { cause: string; where: string }> = new Map([
  ['SQLITE_FULL', { cause: 'the database file system is full (SQLITE_FULL)', where: COORDINATOR_DATA_DIR }],
  [
    '53100',
    {
      cause: 'the PostgreSQL store has no disk space left (SQLSTATE 53100 disk_full)',
      where: "the PostgreSQL server's data directory",
    },
  ],
  ['ENOSPC', { cause: 'no space left on the data file system (ENOSPC)', where: COORDINATOR_DATA_DIR }],
  ['EDQUOT', { cause: 'the disk quota of the data file system is used up (EDQUOT)', where: COORDINATOR_DATA_DIR }],
]);

export function storageFullError(err: unknown): FleetError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const full = FULL_CODES.get(code);
  if (full === undefined) return undefined;
  return new FleetError(
    ErrorCode.storageFull,
    `storage full: ${full.cause}; nothing of this request was saved. Free space on ${full.where}, then retry`,
    undefined,
    { cause: err },
  );
}
