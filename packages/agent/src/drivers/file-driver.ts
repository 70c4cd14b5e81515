import { closeSync, constants, lstatSync, openSync, readdirSync, unlinkSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import {
  AbsolutePathSchema,
  type DescribedState,
  ErrorCode,
  type FileChange,
  FleetError,
  fileContentBytes,
  isFleetError,
  parseMode,
  Sha256Schema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import {
  type AtomicWriteOptions,
  fsyncDirectory,
  isTempFileFor,
  makeDirectoryDurably,
  removeFileDurably,
  writeAll,
  writeFileAtomically,
} from '../fs/atomic-file.js';
import { resolveGid, resolveUid } from './account-ids.js';
import type { Driver, DriverContext, PreflightVerdict } from './driver.js';
import {
  attributesOf,
  digestFrom,
  type FileState,
  formatMode,
  openRegularFile,
  readFileState,
  sha256Of,
} from './file-state.js';
import { isValidAllowedRoot, resolveSafePath, type SafePath } from './safe-path.js';

export interface FileDriverOptions {
  /** The directory standing in for `/`: `/` in production, a temp dir in tests and demos. */
  rootDir: string;
  /** Patch-space absolute paths (e.g. `/etc/myapp`); anything outside them is `policy_denied`. */
  allowedRoots: string[];
  /**
   * Test-only crash points inside each file write: `file:<write>:<step>`, where `write` is
   * `snapshot`, `apply` or `restore` and `step` an `AtomicWriteStep`. Unset in production.
   */
  checkpoint?: (name: string) => void;
}

/** The three writes of the driver, as the test crash points name them. */
type FileWrite = 'snapshot' | 'apply' | 'restore';

/** The prior content lives in the order's snapshot dir under this fixed name, never a journal-supplied one. */
const SNAPSHOT_CONTENT_FILE = 'file-prior-content';

const OctalModeSchema = z.string().regex(/^0[0-7]{3,4}$/);
const IdSchema = z.number().int().min(0).max(0xffff_fffe);

/**
 * What the journal keeps to undo a file change. It is read back from disk before `restore`, so it
 * is parsed again there: a record that does not match this schema is never acted on.
 */
export const FileSnapshotSchema = z.discriminatedUnion('state', [
  z
    .object({
      kind: z.literal('file'),
      version: z.literal(1),
      path: AbsolutePathSchema,
      state: z.literal('absent'),
    })
    .strict(),
  z
    .object({
      kind: z.literal('file'),
      version: z.literal(1),
      path: AbsolutePathSchema,
      state: z.literal('present'),
      contentFile: z.literal(SNAPSHOT_CONTENT_FILE),
      sha256: Sha256Schema,
      size: z.number().int().min(0),
      mode: OctalModeSchema,
      uid: IdSchema,
      gid: IdSchema,
    })
    .strict(),
]);
export type FileSnapshot = z.infer<typeof FileSnapshotSchema>;

interface DesiredState {
  bytes: Buffer;
  sha256: string;
  mode: number;
  uid: number;
  gid: number;
}

/**
 * Manages one whole file: content, mode, owner and group. Every write is atomic (see
 * `writeFileAtomically`), no path component is ever a followed symlink (see `resolveSafePath`), and
 * the prior state is captured and verified before anything changes.
 */
export class FileDriver implements Driver<FileChange, FileSnapshot> {
  readonly kind = 'file' as const;
  readonly #rootDir: string;
  readonly #allowedRoots: readonly string[];
  readonly #checkpoint: ((name: string) => void) | undefined;

  constructor(options: FileDriverOptions) {
    if (!isAbsolute(options.rootDir)) {
      throw new FleetError(ErrorCode.validationFailed, `rootDir must be absolute, got ${options.rootDir}`);
    }
    const invalid = options.allowedRoots.filter((root) => !isValidAllowedRoot(root));
    if (invalid.length > 0) {
      throw new FleetError(
        ErrorCode.validationFailed,
        `allowed roots must be absolute, normalized paths: ${invalid.join(', ')}`,
        { invalid },
      );
    }
    this.#rootDir = options.rootDir;
    this.#allowedRoots = [...options.allowedRoots];
    this.#checkpoint = options.checkpoint;
  }

  async preflight(change: FileChange, ctx: DriverContext): Promise<PreflightVerdict> {
    throwIfCancelled(ctx.signal);
    try {
      const target = await this.#resolve(change);
      const desired = await this.#desiredState(change);
      const current = await readFileState(target.hostPath, target.path);
      if (matchesDesired(current, desired)) {
        return {
          outcome: 'already_applied',
          detail: `${change.path} already has the requested content and attributes`,
        };
      }
      assertExpectedPrior(change, current);
      return { outcome: 'would_apply', detail: describePlannedChange(change, current, desired) };
    } catch (err) {
      const fleetError = asFleetError(err, ErrorCode.preconditionFailed, change.path);
      // A check of the signal in the try must not turn a cancel into would_fail; none is there yet, so:
      // Stryker disable next-line ConditionalExpression: unreachable today
      if (fleetError.code === ErrorCode.cancelled) throw fleetError;
      return { outcome: 'would_fail', code: fleetError.code, detail: fleetError.message };
    }
  }

  async snapshot(change: FileChange, dir: string, ctx: DriverContext): Promise<FileSnapshot> {
    throwIfCancelled(ctx.signal);
    try {
      const target = await this.#resolve(change);
      const opened = await openRegularFile(target.hostPath, target.path);
      if (opened === undefined) {
        // Stryker disable next-line ObjectLiteral: a state without `exists` reads as absent all the same
        assertExpectedPrior(change, { exists: false });
        ctx.log.info({ path: change.path }, 'file snapshot: absent');
        return { kind: 'file', version: 1, path: change.path, state: 'absent' };
      }

      let copied: { sha256: string; size: number } | undefined;
      const attributes = attributesOf(opened.stat);
      try {
        // Durable in its parent before the copy goes in (see Driver.snapshot).
        await makeDirectoryDurably(dir, 0o700);
        await writeFileAtomically(
          dir,
          SNAPSHOT_CONTENT_FILE,
          { mode: 0o600 },
          async (fd) => {
            copied = await digestFrom(opened.fd, fd, opened.stat.size);
          },
          this.#crashPoints('snapshot'),
        );
      } finally {
        closeSync(opened.fd);
      }
      // Unreachable (the writer resolves only after writing): this narrows the type.
      // Stryker disable next-line ConditionalExpression,StringLiteral: unreachable
      if (copied === undefined) throw new Error('snapshot copy produced no digest');

      // The copy is only an escape hatch if it is what the path holds now, not a blend of two
      // versions written while we read.
      const now = await readFileState(target.hostPath, target.path);
      if (
        // Stryker disable next-line ConditionalExpression: a file gone has no sha256, which fails the next check
        !now.exists ||
        now.sha256 !== copied.sha256 ||
        now.mode !== attributes.mode ||
        now.uid !== attributes.uid ||
        now.gid !== attributes.gid
      ) {
        throw new FleetError(ErrorCode.snapshotFailed, `${change.path} changed while it was being snapshotted`, {
          path: change.path,
        });
      }
      assertExpectedPrior(change, now);

      const stored = await readFileState(join(dir, SNAPSHOT_CONTENT_FILE), SNAPSHOT_CONTENT_FILE);
      if (!stored.exists || stored.sha256 !== copied.sha256) {
        throw new FleetError(ErrorCode.snapshotFailed, `snapshot copy of ${change.path} does not read back intact`, {
          path: change.path,
          expected: copied.sha256,
          found: stored.exists ? stored.sha256 : 'absent',
        });
      }

      ctx.log.info({ path: change.path, sha256: copied.sha256, size: copied.size }, 'file snapshot: captured');
      return {
        kind: 'file',
        version: 1,
        path: change.path,
        state: 'present',
        contentFile: SNAPSHOT_CONTENT_FILE,
        sha256: copied.sha256,
        size: copied.size,
        mode: formatMode(attributes.mode),
        uid: attributes.uid,
        gid: attributes.gid,
      };
    } catch (err) {
      throw asFleetError(err, ErrorCode.snapshotFailed, change.path);
    }
  }

  async apply(change: FileChange, ctx: DriverContext): Promise<void> {
    throwIfCancelled(ctx.signal);
    try {
      const target = await this.#resolve(change);
      const desired = await this.#desiredState(change);
      // `judge`: whether to write, from the file as it is now. A change already in place (a re-run
      // after a crash between the rename and the journal entry) is success, not drift; drift is
      // refused. With an expected prior the file is judged once, just before the rename, the latest
      // moment it can be: judged before the temp file is written as well, it was read twice in every
      // apply (and a change found in place only then costs a temp file, removed). Without one it is
      // judged before anything is written, and a file already as wanted is not written again.
      const judge = (current: FileState): boolean => {
        if (matchesDesired(current, desired)) return false;
        assertExpectedPrior(change, current);
        return true;
      };
      // Stryker disable next-line ConditionalExpression: true only writes a temp file for a change already in place, then removes it
      const atTheRename = change.expectedPriorSha256 !== undefined;
      let replaced = false;
      if (atTheRename || judge(await readFileState(target.hostPath, target.path))) {
        replaced = await writeFileAtomically(
          target.hostDir,
          target.name,
          { mode: desired.mode, owner: { uid: desired.uid, gid: desired.gid } },
          (fd) => writeAll(fd, desired.bytes),
          {
            beforeRename: async () => {
              throwIfCancelled(ctx.signal);
              return !atTheRename || judge(await readFileState(target.hostPath, target.path));
            },
            ...this.#crashPoints('apply'),
          },
        );
      }
      if (replaced) ctx.log.info({ path: change.path, sha256: desired.sha256 }, 'file apply: replaced');
      else ctx.log.info({ path: change.path }, 'file apply: already in place');
    } catch (err) {
      throw asFleetError(err, ErrorCode.applyFailed, change.path);
    }
  }

  async verify(change: FileChange, ctx: DriverContext): Promise<void> {
    throwIfCancelled(ctx.signal);
    let mismatches: string[];
    try {
      const target = await this.#resolve(change);
      const desired = await this.#desiredState(change);
      mismatches = describeMismatches(await readFileState(target.hostPath, target.path), desired);
    } catch (err) {
      throw rewrap(asFleetError(err, ErrorCode.verifyFailed, change.path), ErrorCode.verifyFailed);
    }
    if (mismatches.length > 0) {
      throw new FleetError(
        ErrorCode.verifyFailed,
        `${change.path} does not match the change: ${mismatches.join('; ')}`,
        {
          path: change.path,
          mismatches,
        },
      );
    }
    ctx.log.info({ path: change.path }, 'file verify: matches');
  }

  async describe(change: FileChange, _ctx: DriverContext): Promise<DescribedState> {
    const target = await this.#resolve(change);
    const state = await readFileState(target.hostPath, target.path);
    if (!state.exists) return { exists: false };
    return {
      exists: true,
      sha256: state.sha256,
      size: state.size,
      mode: formatMode(state.mode),
      uid: state.uid,
      gid: state.gid,
    };
  }

  /**
   * Deliberately ignores cancellation: a half-finished restore is the worst place to stop, and
   * every step is short. Safe to run any number of times; each run ends by confirming the result.
   */
  async restore(change: FileChange, snapshot: FileSnapshot, dir: string, ctx: DriverContext): Promise<void> {
    try {
      const parsed = FileSnapshotSchema.safeParse(snapshot);
      if (!parsed.success) {
        throw new FleetError(ErrorCode.revertFailed, `snapshot record for ${change.path} is invalid`, {
          path: change.path,
          // Stryker disable next-line StringLiteral: a snapshot record is flat, its issue paths one key long
          issues: parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`),
        });
      }
      const record = parsed.data;
      if (record.path !== change.path) {
        throw new FleetError(ErrorCode.revertFailed, `snapshot record is for ${record.path}, not ${change.path}`, {
          path: change.path,
          snapshotPath: record.path,
        });
      }
      const target = await this.#resolve(change);
      if (record.state === 'absent') {
        await restoreAbsence(target);
      } else {
        await restoreContent(target, record, join(dir, record.contentFile), this.#crashPoints('restore'));
      }
      ctx.log.info({ path: change.path, state: record.state }, 'file restore: confirmed');
    } catch (err) {
      throw rewrap(asFleetError(err, ErrorCode.revertFailed, change.path), ErrorCode.revertFailed);
    }
  }

  /**
   * One file in the snapshot dir, the copy a present record describes (exactly `size` bytes: what was
   * copied, then read back and verified), or nothing for an absent one; the run dir is never used.
   * A snapshot that failed part-way has no record, so its leftovers are walked, not assumed.
   */
  keptBytes(snapshot: unknown): number | undefined {
    const record = snapshot as Partial<FileSnapshot> | undefined;
    if (record?.kind !== 'file' || record.version !== 1) return undefined;
    if (record.state === 'absent') return 0;
    return record.state === 'present' && Number.isSafeInteger(record.size) ? record.size : undefined;
  }

  /** Removes only `.<name>.fleetpatch-tmp-<hex>` regular files beside the target. */
  async cleanup(change: FileChange, ctx: DriverContext): Promise<void> {
    let target: SafePath;
    try {
      target = await this.#resolve(change);
    } catch (err) {
      if (isFleetError(err) && err.code === ErrorCode.preconditionFailed) return; // no directory, no leftovers
      throw asFleetError(err, ErrorCode.internal, change.path);
    }
    try {
      const removed: string[] = [];
      for (const entry of readdirSync(target.hostDir)) {
        if (!isTempFileFor(target.name, entry)) continue;
        const stat = lstatSync(join(target.hostDir, entry));
        if (!stat.isFile()) {
          ctx.log.warn({ path: change.path, entry }, 'file cleanup: leaving a non-file that looks like a temp file');
          continue;
        }
        unlinkSync(join(target.hostDir, entry));
        removed.push(entry);
      }
      if (removed.length > 0) {
        await fsyncDirectory(target.hostDir);
        ctx.log.info({ path: change.path, removed }, 'file cleanup: removed leftover temp files');
      }
    } catch (err) {
      throw asFleetError(err, ErrorCode.internal, change.path);
    }
  }

  #crashPoints(write: FileWrite): Pick<AtomicWriteOptions, 'checkpoint'> {
    const checkpoint = this.#checkpoint;
    return checkpoint ? { checkpoint: (step) => checkpoint(`file:${write}:${step}`) } : {};
  }

  #resolve(change: FileChange): Promise<SafePath> {
    return resolveSafePath(this.#rootDir, change.path, this.#allowedRoots);
  }

  async #desiredState(change: FileChange): Promise<DesiredState> {
    const mode = parseMode(change.mode);
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
      throw new FleetError(ErrorCode.policyDenied, `mode ${change.mode} is not a valid octal mode`, {
        path: change.path,
      });
    }
    const { bytes, sha256 } = contentOf(change);
    return {
      bytes,
      sha256,
      mode,
      uid: await resolveUid(change.owner),
      gid: await resolveGid(change.group),
    };
  }
}

/** Each change's bytes and their digest, made once per order (see `contentOf`). */
const contents = new WeakMap<FileChange, { bytes: Buffer; sha256: string }>();

/**
 * A change's bytes and their SHA-256: the same at its order's preflight, snapshot, apply and verify,
 * and up to a megabyte to decode and hash, so made once per change object (an order's). The bytes
 * are only ever written out, never changed.
 */
function contentOf(change: FileChange): { bytes: Buffer; sha256: string } {
  let content = contents.get(change);
  if (content === undefined) {
    const bytes = fileContentBytes(change);
    content = { bytes, sha256: sha256Of(bytes) };
    contents.set(change, content);
  }
  return content;
}

async function restoreAbsence(target: SafePath): Promise<void> {
  const current = await readFileState(target.hostPath, target.path);
  if (current.exists) {
    await removeFileDurably(target.hostDir, target.name);
  } else {
    // A crash may have come between unlink and fsync; syncing again makes the absence durable.
    await fsyncDirectory(target.hostDir);
  }
  const after = await readFileState(target.hostPath, target.path);
  if (after.exists) {
    throw new FleetError(ErrorCode.revertFailed, `${target.path} is still present after removal`, {
      path: target.path,
    });
  }
}

async function restoreContent(
  target: SafePath,
  record: Extract<FileSnapshot, { state: 'present' }>,
  contentPath: string,
  crashPoints: Pick<AtomicWriteOptions, 'checkpoint'>,
): Promise<void> {
  const wanted = { sha256: record.sha256, mode: parseMode(record.mode), uid: record.uid, gid: record.gid };
  const current = await readFileState(target.hostPath, target.path);
  if (!matchesDesired(current, wanted)) {
    const source = openSync(contentPath, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      let copied: { sha256: string; size: number } | undefined;
      await writeFileAtomically(
        target.hostDir,
        target.name,
        { mode: wanted.mode, owner: { uid: wanted.uid, gid: wanted.gid } },
        async (fd) => {
          copied = await digestFrom(source, fd, record.size);
        },
        {
          // Never put a damaged copy in place of the file: the digest is of exactly what was written.
          beforeRename: async () => {
            if (
              // Stryker disable next-line OptionalChaining: the copy is made before beforeRename runs
              copied?.sha256 !== record.sha256 ||
              // Stryker disable next-line ConditionalExpression: a copy with the recorded sha256 has the recorded size
              copied.size !== record.size
            ) {
              throw new FleetError(ErrorCode.revertFailed, `snapshot content for ${target.path} is corrupt`, {
                path: target.path,
                expected: record.sha256,
                // Stryker disable next-line OptionalChaining: as above
                found: copied?.sha256,
              });
            }
          },
          ...crashPoints,
        },
      );
    } finally {
      closeSync(source);
    }
  }
  const mismatches = describeMismatches(await readFileState(target.hostPath, target.path), wanted);
  if (mismatches.length > 0) {
    throw new FleetError(
      ErrorCode.revertFailed,
      `${target.path} does not match its snapshot after restore: ${mismatches.join('; ')}`,
      { path: target.path, mismatches },
    );
  }
}

type ExpectedAttributes = Pick<DesiredState, 'sha256' | 'mode' | 'uid' | 'gid'>;

function matchesDesired(current: FileState, desired: ExpectedAttributes): boolean {
  return current.exists && describeMismatches(current, desired).length === 0;
}

function describeMismatches(current: FileState, desired: ExpectedAttributes): string[] {
  if (!current.exists) return ['file is absent'];
  const mismatches: string[] = [];
  if (current.sha256 !== desired.sha256) mismatches.push(`sha256 is ${current.sha256}, expected ${desired.sha256}`);
  if (current.mode !== desired.mode) {
    mismatches.push(`mode is ${formatMode(current.mode)}, expected ${formatMode(desired.mode)}`);
  }
  if (current.uid !== desired.uid) mismatches.push(`uid is ${current.uid}, expected ${desired.uid}`);
  if (current.gid !== desired.gid) mismatches.push(`gid is ${current.gid}, expected ${desired.gid}`);
  return mismatches;
}

/** Drift is refused, never overwritten: the operator's picture of the host was wrong. */
function assertExpectedPrior(change: FileChange, current: FileState): void {
  const expected = change.expectedPriorSha256;
  if (expected === undefined) return;
  const found = current.exists ? current.sha256 : 'absent';
  if (expected === found) return;
  const message =
    expected === 'absent'
      ? `drift: expected ${change.path} to be absent, found sha256 ${found}`
      : `drift: expected sha256 ${expected}, found ${found === 'absent' ? 'no file' : found}`;
  throw new FleetError(ErrorCode.preconditionFailed, message, { path: change.path, expected, found });
}

function describePlannedChange(change: FileChange, current: FileState, desired: DesiredState): string {
  const target = `${desired.bytes.byteLength} bytes, mode ${formatMode(desired.mode)}, ${change.owner}:${change.group}`;
  return current.exists
    ? `replace ${change.path} (sha256 ${current.sha256}) with sha256 ${desired.sha256} (${target})`
    : `create ${change.path} with sha256 ${desired.sha256} (${target})`;
}

function throwIfCancelled(signal: AbortSignal): void {
  if (signal.aborted) throw new FleetError(ErrorCode.cancelled, 'order cancelled');
}

/** FleetErrors keep their code (policy, precondition, cancelled); anything else becomes `fallback`. */
function asFleetError(err: unknown, fallback: ErrorCode, path: string): FleetError {
  if (isFleetError(err)) return err;
  const errno = err instanceof Error ? (err as NodeJS.ErrnoException).code : undefined;
  const message = err instanceof Error ? err.message : String(err);
  return new FleetError(
    fallback,
    `${path}: ${message}`,
    { path, ...(errno === undefined ? {} : { errno }) },
    { cause: err },
  );
}

/** For steps whose contract is a single code (verify, restore): keep the cause in the details. */
function rewrap(err: FleetError, code: ErrorCode): FleetError {
  if (err.code === code) return err;
  return new FleetError(code, err.message, { ...err.details, cause: err.code }, { cause: err });
}
