import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';

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
  /** Runs after the temp file is durable and before the rename: the last moment to back out. */
  beforeRename?: () => Promise<void>;
  /**
   * Test-only crash points: called at each `AtomicWriteStep`, so the crash matrix can kill the
   * process inside a write (see the agent's FLEETPATCH_TEST_CRASH_AT). Unset in production.
   */
  checkpoint?: (step: AtomicWriteStep) => void;
}

/**
 * Replaces `dir/name` so that a reader (or a crash) sees exactly the old or the new bytes: write a
 * temp file in the same directory, set ownership then mode (chown clears setuid/setgid, so the
 * other order would silently drop them), fsync, rename over the target, fsync the directory so the
 * rename itself survives a power cut.
 */
export async function writeFileAtomically(
  dir: string,
  name: string,
  attributes: FileAttributes,
  writeContent: (handle: FileHandle) => Promise<void>,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const tempPath = join(dir, `${tempPrefixFor(name)}${randomBytes(8).toString('hex')}`);
  // O_EXCL never follows or reuses anything already at tempPath; 0600 until the real mode is set.
  const handle = await open(
    tempPath,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    0o600,
  );
  let renamed = false;
  try {
    try {
      await writeContent(handle);
      if (attributes.owner !== undefined) await handle.chown(attributes.owner.uid, attributes.owner.gid);
      await handle.chmod(attributes.mode);
      options.checkpoint?.('temp-written');
      await handle.sync();
    } finally {
      await handle.close();
    }
    options.checkpoint?.('temp-synced');
    await options.beforeRename?.();
    await rename(tempPath, join(dir, name));
    renamed = true;
    options.checkpoint?.('renamed');
    await fsyncDirectory(dir);
  } finally {
    if (!renamed) await unlink(tempPath).catch(() => undefined);
  }
}

/** Writes all of `bytes` at the handle's current position. */
export async function writeAll(handle: FileHandle, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.byteLength) {
    const { bytesWritten } = await handle.write(bytes, offset, bytes.byteLength - offset);
    offset += bytesWritten;
  }
}

/** Makes creations, renames and removals in `dir` durable. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Makes `dir` (and any missing parent) and makes each directory it made durable: a new directory
 * is an entry in its parent, lost in a power cut like any other until the parent is fsync'd — and
 * with it every file renamed into it, however carefully those were synced.
 */
export async function makeDirectoryDurably(dir: string, mode: number): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode });
  if (first === undefined) return; // it was there already
  for (let made = dir; ; made = dirname(made)) {
    await fsyncDirectory(dirname(made));
    if (made === first) return;
    // The walk always meets `first`: mkdir returns it as a prefix of `dir` cut at a separator, as
    // dirname cuts (tried on absolute paths with '.', '..', '//' and trailing '/'). Stopping at / is
    // only a backstop against fsyncing it for ever, so no test can reach it:
    // Stryker disable next-line ConditionalExpression: unreachable backstop, see above
    if (dirname(made) === made) return;
  }
}

/** Removes `dir/name` and makes the removal durable. */
export async function removeFileDurably(dir: string, name: string): Promise<void> {
  await unlink(join(dir, name));
  await fsyncDirectory(dir);
}
