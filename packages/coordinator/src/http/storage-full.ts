import { ErrorCode, FleetError } from '@fleetpatch/shared';

/**
 * A full disk under the coordinator is an operator's problem with a plain fix, not an internal
 * error: SQLite answers SQLITE_FULL (better-sqlite3 puts it in `code`) and rolls the statement or
 * transaction back, a file write answers ENOSPC or EDQUOT. Either way nothing of the request was
 * committed, so the client is told to come back once space is freed — and what was full, so the
 * operator knows where to look. Anything else is not this error.
 */
const FULL_CODES: ReadonlyMap<string, string> = new Map([
  ['SQLITE_FULL', 'the database file system is full (SQLITE_FULL)'],
  ['ENOSPC', 'no space left on the data file system (ENOSPC)'],
  ['EDQUOT', 'the disk quota of the data file system is used up (EDQUOT)'],
]);

export function storageFullError(err: unknown): FleetError | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const cause = FULL_CODES.get(code);
  if (cause === undefined) return undefined;
  return new FleetError(
    ErrorCode.storageFull,
    `storage full: ${cause}; nothing of this request was saved. Free space on the coordinator's data dir, then retry`,
    undefined,
    { cause: err },
  );
}
