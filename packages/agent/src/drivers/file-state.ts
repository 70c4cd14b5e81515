import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync, type Stats } from 'node:fs';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { ErrorCode, FleetError } from '@fleetpatch/shared';
import { writeAll } from '../fs/atomic-file.js';
import { isErrno } from './safe-path.js';

/** What a managed path holds right now. `mode` is the permission bits only (mask 07777). */
export type FileState =
  | { exists: false }
  | { exists: true; sha256: string; size: number; mode: number; uid: number; gid: number };

export interface OpenedFile {
  /** A file descriptor the caller must close (closeSync). */
  fd: number;
  stat: Stats;
}

const CHUNK_BYTES = 64 * 1024;
/**
 * The calls here are synchronous, as the atomic writer's are (see fs/atomic-file.ts for why); a
 * large file is read in slices with a turn of the event loop between them, so that a big file
 * never holds the agent's socket for long.
 */
const CHUNKS_PER_TURN = 128;

/**
 * Opens a regular file for reading without following a symlink at any point: `lstat` names the
 * problem clearly, `O_NOFOLLOW` closes the gap if the path is swapped in between, and the
 * device/inode comparison proves the handle is the file that was checked. `O_NONBLOCK` keeps a
 * FIFO swapped in at the last moment from hanging the agent. Returns undefined when nothing is there.
 */
export async function openRegularFile(hostPath: string, displayPath: string): Promise<OpenedFile | undefined> {
  // A file not there is an answer (a change that creates it), not an error: no exception made for it.
  const before = lstatSync(hostPath, { throwIfNoEntry: false });
  if (before === undefined) return undefined;
  assertRegularFile(before, displayPath);

  let fd: number;
  try {
    fd = openSync(hostPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    // Stryker disable next-line ConditionalExpression: for any other error a regular file passes and `err` is thrown
    if (isErrno(err, 'ELOOP')) assertRegularFile(lstatSync(hostPath), displayPath);
    throw err;
  }
  try {
    const stat = fstatSync(fd);
    assertRegularFile(stat, displayPath);
    // A file swapped in has another inode; only one from another mount could keep it and change dev.
    // Stryker disable next-line ConditionalExpression: see above
    if (stat.dev !== before.dev || stat.ino !== before.ino) {
      throw new FleetError(ErrorCode.preconditionFailed, `${displayPath} was replaced while being inspected`, {
        path: displayPath,
      });
    }
    return { fd, stat };
  } catch (err) {
    closeSync(fd);
    throw err;
  }
}

function assertRegularFile(stat: Stats, displayPath: string): void {
  if (stat.isSymbolicLink()) {
    throw new FleetError(
      ErrorCode.policyDenied,
      `${displayPath} is a symbolic link; fleetpatch never follows symlinks`,
      {
        path: displayPath,
      },
    );
  }
  if (!stat.isFile()) {
    throw new FleetError(ErrorCode.policyDenied, `${displayPath} is not a regular file`, { path: displayPath });
  }
}

/** Reads the current state of a managed path; see `openRegularFile` for what is refused. */
export async function readFileState(hostPath: string, displayPath: string): Promise<FileState> {
  const opened = await openRegularFile(hostPath, displayPath);
  // Stryker disable next-line ObjectLiteral: a state without `exists` reads as absent all the same
  if (opened === undefined) return { exists: false };
  try {
    const { sha256, size } = await digestFrom(opened.fd, undefined, opened.stat.size);
    return { exists: true, sha256, size, ...attributesOf(opened.stat) };
  } finally {
    closeSync(opened.fd);
  }
}

export function attributesOf(stat: Stats): { mode: number; uid: number; gid: number } {
  return { mode: stat.mode & 0o7777, uid: stat.uid, gid: stat.gid };
}

/**
 * Streams the whole file from offset 0, optionally copying every chunk to `copyTo`, and returns
 * the sha256 of exactly the bytes read (so a copy is hashed from what was written, not re-read).
 */
export async function digestFrom(
  source: number,
  copyTo?: number,
  /** The file's size when it was opened, if known: a small file gets a small buffer (read to the end all the same). */
  sizeHint = CHUNK_BYTES,
): Promise<{ sha256: string; size: number }> {
  const hash = createHash('sha256');
  const buffer = Buffer.allocUnsafe(Math.min(CHUNK_BYTES, Math.max(sizeHint + 1, 512)));
  let position = 0;
  for (let chunks = 1; ; chunks++) {
    const bytesRead = readSync(source, buffer, 0, buffer.byteLength, position);
    if (bytesRead === 0) break;
    const chunk = buffer.subarray(0, bytesRead);
    hash.update(chunk);
    if (copyTo !== undefined) writeAll(copyTo, chunk);
    position += bytesRead;
    // A regular file's read comes back short only at its end: one read for a file smaller than the
    // buffer (the buffer is a byte larger than the size at open), not a second one that finds nothing.
    // A file grown since its fstat fills the buffer, and is read on.
    if (bytesRead < buffer.byteLength) break;
    if (chunks % CHUNKS_PER_TURN === 0) await nextTurn();
  }
  return { sha256: hash.digest('hex'), size: position };
}

export function sha256Of(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** `0644`, `04755`: the notation operators write and the journal stores. */
export function formatMode(mode: number): string {
  return `0${mode.toString(8).padStart(3, '0')}`;
}
