import { lstatSync, type Stats } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { ErrorCode, FleetError, isNormalizedAbsolutePath } from '@fleetpatch/shared';

/** A managed path that passed policy, with where it lives on this machine. */
export interface SafePath {
  /** Patch-space path as the operator wrote it, e.g. `/etc/app.conf`. */
  readonly path: string;
  /** `join(rootDir, path)`: the file on this machine. */
  readonly hostPath: string;
  /** The directory that holds `hostPath`; temp files and renames happen here. */
  readonly hostDir: string;
  /** The last segment of `path`. */
  readonly name: string;
}

/** `/` or an absolute, normalized path: the only shapes an allowed root may take. */
export function isValidAllowedRoot(root: string): boolean {
  return root === '/' || isNormalizedAbsolutePath(root);
}

/**
 * Pure policy: the path is absolute and normalized (the shared schema checks this too; the agent
 * re-checks because it is the last line of defence on its host) and lies under an allowed root.
 */
export function assertPathAllowed(path: string, allowedRoots: readonly string[]): void {
  if (!isNormalizedAbsolutePath(path)) {
    throw new FleetError(ErrorCode.policyDenied, `path ${JSON.stringify(path)} is not an absolute, normalized path`, {
      path,
    });
  }
  const allowed = allowedRoots.some((root) => root === '/' || path === root || path.startsWith(`${root}/`));
  if (!allowed) {
    throw new FleetError(
      ErrorCode.policyDenied,
      `path ${path} is outside the allowed roots (${allowedRoots.length > 0 ? allowedRoots.join(', ') : 'none configured'})`,
      { path, allowedRoots: [...allowedRoots] },
    );
  }
}

/**
 * Checks policy, then walks every directory from `rootDir` down to the target's parent with
 * `lstat`, refusing anything an unprivileged user could use to redirect a root-owned write:
 * symlinks, non-directories, directories writable by group or others, and directories owned by
 * anyone but root or this process. Node has no `openat`, so this narrows rather than closes the
 * check-then-use window; refusing directories others can write is what makes the window unusable.
 *
 * Missing parents are `precondition_failed`, never created: a patch targets an existing directory,
 * and a directory the agent invented would carry ownership and mode nobody reviewed.
 */
export async function resolveSafePath(
  rootDir: string,
  path: string,
  allowedRoots: readonly string[],
  // Stryker disable next-line StringLiteral: anything but 'read' gets the checks of a write
  use: 'write' | 'read' = 'write',
): Promise<SafePath> {
  assertPathAllowed(path, allowedRoots);
  if (!isAbsolute(rootDir)) {
    throw new FleetError(ErrorCode.policyDenied, `rootDir ${rootDir} is not absolute`, { rootDir });
  }

  // Every call walks again, lstat by lstat, and nothing is remembered between calls: a cache would
  // be a window in which a directory swapped for a symlink goes unseen. The lstats are synchronous
  // (see fs/atomic-file.ts): a walk is a few microseconds of system calls, not a thread-pool trip each.
  // `/`, the root in production, is the root of this process's file system: a real directory, never
  // a symlink, so there is nothing to look at (its lstat was one system call of every walk). Any
  // other root is looked at again at every walk.
  // Stryker disable next-line ConditionalExpression,StringLiteral: looking at / too only costs the lstat this spares
  if (rootDir !== '/') {
    const rootStat = lstatOrUndefined(rootDir);
    if (rootStat === undefined || rootStat.isSymbolicLink() || !rootStat.isDirectory()) {
      throw new FleetError(ErrorCode.policyDenied, `rootDir ${rootDir} is not a real directory`, { rootDir });
    }
  }

  const segments = path.slice(1).split('/');
  const name = segments.pop();
  // Stryker disable all: unreachable, a normalized path ends in a name (assertPathAllowed); this narrows the type
  if (name === undefined || name === '') {
    throw new FleetError(ErrorCode.policyDenied, `path ${path} has no file name`, { path });
  }
  // Stryker restore all

  let hostDir = rootDir;
  let patchDir = '';
  for (const segment of segments) {
    hostDir = childPath(hostDir, segment, rootDir);
    patchDir = `${patchDir}/${segment}`;
    const stat = lstatOrUndefined(hostDir);
    if (stat === undefined) {
      throw new FleetError(
        ErrorCode.preconditionFailed,
        `parent directory ${patchDir} does not exist (fleetpatch does not create directories)`,
        { path, parent: patchDir, reason: 'missing_parent' },
      );
    }
    describeUnsafeDirectory(stat, patchDir, path, use);
  }

  return { path, hostPath: childPath(hostDir, name, rootDir), hostDir, name };
}

/**
 * `join(dir, name)` for a plain name (a segment of a normalized path: no '', '.' or '..'). Below the
 * root `dir` is what join made already, so appending gives what join would, without normalizing the
 * whole string again at every step of every walk.
 */
function childPath(dir: string, name: string, rootDir: string): string {
  return dir === rootDir ? join(rootDir, name) : `${dir}/${name}`;
}

/**
 * For a write every parent must be a real directory only root (or this process) can change. For a
 * read (a file health check, which reports existence and a hash match, nothing of the content) a
 * real directory is enough: a package's own directories may belong to another user.
 */
function describeUnsafeDirectory(stat: Stats, patchDir: string, path: string, use: 'write' | 'read'): void {
  const details = { path, parent: patchDir };
  if (stat.isSymbolicLink()) {
    throw new FleetError(
      ErrorCode.policyDenied,
      `parent ${patchDir} is a symbolic link; fleetpatch never follows symlinks`,
      details,
    );
  }
  if (!stat.isDirectory()) {
    throw new FleetError(ErrorCode.policyDenied, `parent ${patchDir} is not a directory`, details);
  }
  if (use === 'read') return;
  if ((stat.mode & 0o022) !== 0) {
    throw new FleetError(
      ErrorCode.policyDenied,
      `parent ${patchDir} is writable by group or others (mode 0${(stat.mode & 0o7777).toString(8)})`,
      { ...details, mode: stat.mode & 0o7777 },
    );
  }
  // The agent's own uid is asked only of a directory root does not own: every parent of a managed
  // path is root's on a real host, so a walk makes no geteuid call (it was one per walk). Asked, not
  // remembered: the answer is the process's at the moment of the check.
  // Stryker disable next-line OptionalChaining: geteuid exists on every POSIX system the agent runs on
  if (stat.uid !== 0 && stat.uid !== (process.geteuid?.() ?? 0)) {
    throw new FleetError(
      ErrorCode.policyDenied,
      `parent ${patchDir} is owned by uid ${stat.uid}, who could swap its entries; only root-owned directories are trusted`,
      { ...details, uid: stat.uid },
    );
  }
}

function lstatOrUndefined(hostPath: string): Stats | undefined {
  try {
    // Nothing there is an answer, not an error: no exception (and its stack) made for it.
    return lstatSync(hostPath, { throwIfNoEntry: false });
  } catch (err) {
    // ENOTDIR (which throwIfNoEntry does not cover): a component of the path is a file; for the
    // walk that is the same as "not there".
    if (isErrno(err, 'ENOTDIR')) return undefined;
    throw err;
  }
}

export function isErrno(err: unknown, code: string): boolean {
  return err instanceof Error && (err as NodeJS.ErrnoException).code === code;
}
