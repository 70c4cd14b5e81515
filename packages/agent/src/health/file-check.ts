import { createHash } from 'node:crypto';
import type { Stats } from 'node:fs';
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { type CheckOfKind, type CheckOutcome, describeError, fail, pass } from './check-outcome.js';

const CHUNK_BYTES = 64 * 1024;

/**
 * Existence by lstat, so a symlink is seen as itself; the hash is read with O_NOFOLLOW so a link
 * swapped in after the lstat is refused rather than followed.
 */
export async function runFileCheck(
  check: CheckOfKind<'file'>,
  hostPath: string,
  signal: AbortSignal,
): Promise<CheckOutcome> {
  let stats: Stats;
  try {
    stats = await lstat(hostPath);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return fail(
      code === 'ENOENT' ? `${check.path} does not exist` : `cannot stat ${check.path}: ${describeError(err)}`,
    );
  }
  const type = describeType(stats);
  if (check.sha256 === undefined) return pass(`${check.path} exists (${type})`);
  if (!stats.isFile()) return fail(`${check.path} is a ${type}, not a regular file; cannot compare sha256`);

  let actual: string;
  try {
    actual = await sha256Of(hostPath, signal);
  } catch (err) {
    if (signal.aborted) return fail('aborted');
    const code = (err as NodeJS.ErrnoException).code;
    return fail(
      code === 'ELOOP' ? `${check.path} became a symlink` : `cannot read ${check.path}: ${describeError(err)}`,
    );
  }
  return actual === check.sha256
    ? pass(`${check.path} sha256 matches (${shortHash(actual)}, ${stats.size} bytes)`)
    : fail(`${check.path} sha256 is ${shortHash(actual)}, expected ${shortHash(check.sha256)}`);
}

async function sha256Of(path: string, signal: AbortSignal): Promise<string> {
  const handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.allocUnsafe(CHUNK_BYTES);
    for (;;) {
      signal.throwIfAborted();
      const { bytesRead } = await handle.read(buffer, 0, CHUNK_BYTES, null);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
    }
    return hash.digest('hex');
  } finally {
    await handle.close();
  }
}

function describeType(stats: Stats): string {
  if (stats.isFile()) return `regular file, ${stats.size} bytes`;
  if (stats.isDirectory()) return 'directory';
  if (stats.isSymbolicLink()) return 'symlink';
  return 'special file';
}

function shortHash(hash: string): string {
  return `${hash.slice(0, 12)}…`;
}
