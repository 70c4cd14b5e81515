import { createHash, randomFillSync } from 'node:crypto';
import {
  closeSync,
  constants,
  fchmodSync,
  fchownSync,
  fdatasyncSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  unlinkSync,
  writeSync,
  writevSync,
} from 'node:fs';
import { dirname, join } from 'node:path';

/*
 * Synchronous system calls, on purpose. Each durable step of an order must end before the next one
 * starts, so an order never has anything else to do while its write runs; what a promise-based call
 * adds is a round trip through libuv's thread pool, which on a journal entry or a small config file
 * costs several times the system call itself (a whole atomic replace: ~60 µs of CPU in sync calls,
 * ~450 µs through node:fs/promises, measured on the bench's VM). The price is that the event loop
 * waits out the disk's flush (an fsync: well under a millisecond on an SSD, more on a busy disk):
 * heartbeats, health-check polls and other orders wait that much longer, which they tolerate (the
 * connection counts as dead only after two silent heartbeat intervals, seconds). Large reads take
 * turns (see drivers/file-state.ts).
 */

const TEMP_MARKER = '.fleetpatch-tmp-';
const TEMP_SUFFIX_PATTERN = /^[0-9a-f]{16}$/;
/** Keeps `.<name>.fleetpatch-tmp-<16 hex>` within NAME_MAX (255) for any legal name. */
const MAX_NAME_IN_TEMP = 200;

/**
 * Temp files are named after their target so that an interrupted write can be found and removed
 * later without touching anything else: `.<name>.fleetpatch-tmp-<random>`. Very long names are
 * replaced by a digest so the temp name stays legal.
 */
export function tempPrefixFor(name: string): string {
  const stem =
    Buffer.byteLength(name) > MAX_NAME_IN_TEMP ? createHash('sha256').update(name).digest('hex').slice(0, 32) : name;
  return `.${stem}${TEMP_MARKER}`;
}

export function isTempFileFor(name: string, candidate: string): boolean {
  const prefix = tempPrefixFor(name);
  return candidate.startsWith(prefix) && TEMP_SUFFIX_PATTERN.test(candidate.slice(prefix.length));
}

export interface FileAttributes {
  /** Permission bits including setuid/setgid/sticky, applied after ownership. */
  mode: number;
  /** Omitted when the file should keep the creating process's ownership. */
  owner?: { uid: number; gid: number };
}

/**
 * The moments inside a write that a crash can fall between: the temp file written but not yet
 * fsync'd, fsync'd but not yet renamed over the target, renamed but the directory not yet fsync'd.
 */
export type AtomicWriteStep = 'temp-written' | 'temp-synced' | 'renamed';

export interface AtomicWriteOptions {
  /**
   * Runs after the temp file is durable and before the rename: the last moment to back out, by
   * throwing (the write fails), or by resolving to false when the target is found to be as it should
   * be already (the temp file is removed, nothing is renamed, and the write resolves to false).
   */
  beforeRename?: (() => Promise<void>) | (() => Promise<boolean>);
  /**
   * Test-only crash points: called at each `AtomicWriteStep`, so the crash matrix can kill the
   * process inside a write (see the agent's FLEETPATCH_TEST_CRASH_AT). Unset in production.
   */
  checkpoint?: (step: AtomicWriteStep) => void;
  /**
   * False skips the directory's fsync after the rename, for a write whose loss in a power cut is
   * harmless because the old file is as valid as the new (the journal's ack). The new bytes are
   * still synced before the rename: after a power cut the file is the old one or the new, never torn.
   */
  durableRename?: boolean;
}

/**
 * Replaces `dir/name` so that a reader (or a crash) sees exactly the old or the new bytes: write a
 * temp file in the same directory, set ownership then mode (chown clears setuid/setgid, so the
 * other order would silently drop them), fsync, rename over the target, fsync the directory so the
 * rename itself survives a power cut. Resolves to whether it renamed (see `beforeRename`).
 */
export async function writeFileAtomically(
  dir: string,
  name: string,
  attributes: FileAttributes,
  writeContent: (fd: number) => void | Promise<void>,
  options: AtomicWriteOptions = {},
): Promise<boolean> {
  const tempPath = join(dir, `${tempPrefixFor(name)}${randomSuffix()}`);
  // O_EXCL never follows or reuses anything already at tempPath; 0600 until the real mode is set.
  const fd = openSync(
    tempPath,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  /** Whether the temp file is gone from tempPath: renamed over the target, or removed on purpose. */
  let placed = false;
  try {
    try {
      await writeContent(fd);
      if (attributes.owner !== undefined) fchownSync(fd, attributes.owner.uid, attributes.owner.gid);
      fchmodSync(fd, attributes.mode);
      options.checkpoint?.('temp-written');
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    options.checkpoint?.('temp-synced');
    if ((await options.beforeRename?.()) === false) {
      // The target is as it should be: the temp file goes, durably (it was fsync'd, so a power cut
      // could otherwise bring it back beside a target nothing else will touch again).
      unlinkSync(tempPath);
      placed = true;
      if (options.durableRename !== false) fsyncDirectorySync(dir);
      return false;
    }
    renameSync(tempPath, join(dir, name));
    placed = true;
    options.checkpoint?.('renamed');
    if (options.durableRename !== false) fsyncDirectorySync(dir);
    return true;
  } finally {
    if (!placed) unlinkQuietly(tempPath);
  }
}

/**
 * 16 random hex digits. Drawn from a pool filled 64 names at a time: one call into the system's
 * random source per name cost more than the rest of a journal write's naming. Unpredictability is
 * a courtesy here, not a defence (O_EXCL and O_NOFOLLOW are): only root can write where they go.
 */
function randomSuffix(): string {
  if (randomPoolAt >= RANDOM_POOL.byteLength) {
    randomFillSync(RANDOM_POOL);
    randomPoolAt = 0;
  }
  randomPoolAt += 8;
  return RANDOM_POOL.toString('hex', randomPoolAt - 8, randomPoolAt);
}
const RANDOM_POOL = Buffer.alloc(8 * 64);
let randomPoolAt = RANDOM_POOL.byteLength;

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Gone already, or the directory refuses: the cleanup at the next start removes temp files.
  }
}

/**
 * Writes all of `bytes` at the file's current position, however few of them one call takes
 * (`write`: writeSync, or in a test one that takes part of them).
 */
export function writeAll(
  fd: number,
  bytes: Uint8Array,
  write: (fd: number, bytes: Uint8Array, offset: number, length: number) => number = writeSync,
): void {
  let offset = 0;
  while (offset < bytes.byteLength) offset += progressOf(write(fd, bytes, offset, bytes.byteLength - offset));
}

/**
 * The bytes a write of at least one byte took. None is an error, not a reason to ask again: a file
 * system that answers "0 written" (which POSIX leaves open) would otherwise hold the agent's event
 * loop in the retry for ever — its socket, heartbeat and every other order with it.
 */
export function progressOf(written: number): number {
  if (written <= 0) throw Object.assign(new Error('a write took no bytes'), { code: 'EIO' });
  return written;
}

/**
 * Writes `chunks` one after another as if they were one buffer, with one `writev` for the lot (no
 * copy into a buffer of their sum), however few bytes a call takes (`writev`: writevSync, or in a
 * test one that takes part of them).
 */
export function writeAllChunks(
  fd: number,
  chunks: readonly Uint8Array[],
  writev: (fd: number, chunks: readonly Uint8Array[]) => number = writevSync,
): void {
  let pending = chunks.filter((chunk) => chunk.byteLength > 0);
  while (pending.length > 0) {
    let written = progressOf(writev(fd, pending));
    while (pending.length > 0 && written >= (pending[0] as Uint8Array).byteLength) {
      written -= (pending[0] as Uint8Array).byteLength;
      pending = pending.slice(1);
    }
    if (written > 0) pending = [(pending[0] as Uint8Array).subarray(written), ...pending.slice(1)];
  }
}

/** The moments inside an append that a crash can fall between: written but not synced, synced. */
export type AppendStep = 'appended' | 'synced';

export interface AppendOptions {
  /** False leaves the bytes unsynced: an append whose loss in a power cut is harmless (the journal's ack). */
  durable?: boolean;
  /** Test-only crash points, as `AtomicWriteOptions.checkpoint`. Unset in production. */
  checkpoint?: (step: AppendStep) => void;
}

/**
 * Appends `bytes` to the file at `path`, which must exist (never created here, never a symlink
 * followed), and syncs its data (`fdatasync`: the bytes and the size that reaches them) unless
 * `durable` is false. Its name is durable already: nothing in the directory changes. A crash or a
 * full disk can leave a torn tail — part of what was appended — so whoever reads the file must know
 * where each appended record ends (the journal ends each with a newline, see journal.ts).
 */
export function appendToFile(path: string, bytes: Uint8Array, options: AppendOptions = {}): void {
  const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_NOFOLLOW);
  try {
    writeAll(fd, bytes);
    options.checkpoint?.('appended');
    if (options.durable === false) return;
    fdatasyncSync(fd);
    options.checkpoint?.('synced');
  } finally {
    closeSync(fd);
  }
}

/** Makes `dir/name` durable as it is now: its bytes (fsync), then its name in `dir`. */
export function syncFileAndDirectory(dir: string, name: string): void {
  const fd = openSync(join(dir, name), constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  fsyncDirectorySync(dir);
}

/** Makes creations, renames and removals in `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  fsyncDirectorySync(dir);
}

function fsyncDirectorySync(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/**
 * Makes `dir` (and any missing parent) and makes each directory it made durable: a new directory
 * is an entry in its parent, lost in a power cut like any other until the parent is fsync'd — and
 * with it every file renamed into it, however carefully those were synced. Resolves to whether it
 * made `dir` (false: it was there already, with whatever it holds).
 */
export async function makeDirectoryDurably(dir: string, mode: number): Promise<boolean> {
  const first = mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return false; // it was there already
  for (let made = dir; ; made = dirname(made)) {
    fsyncDirectorySync(dirname(made));
    if (made === first) return true;
    // The walk always meets `first`: mkdir returns it as a prefix of `dir` cut at a separator, as
    // dirname cuts (tried on absolute paths with '.', '..', '//' and trailing '/'). Stopping at / is
    // only a backstop against fsyncing it for ever, so no test can reach it:
    // Stryker disable next-line ConditionalExpression,BooleanLiteral: unreachable backstop, see above
    if (dirname(made) === made) return true;
  }
}

/** Removes `dir/name` and makes the removal durable. */
export async function removeFileDurably(dir: string, name: string): Promise<void> {
  unlinkSync(join(dir, name));
  fsyncDirectorySync(dir);
}
