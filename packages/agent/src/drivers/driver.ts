import type { Change, DescribedState, ErrorCode, PackageMove } from '@fleetpatch/shared';
import type { Logger } from 'pino';

export interface DriverContext {
  /** Aborted when the order is cancelled or the agent stops; long commands must honour it. */
  signal: AbortSignal;
  log: Logger;
  /**
   * For a dry run: the longest a lock may be waited for, so that the answer (`blocked`, with the
   * holder) arrives while the coordinator still listens. Absent: the driver's own lock timeout.
   */
  lockWaitMs?: number;
  /**
   * True only inside an apply order: its preflight may refresh what the host knows of available
   * versions (`apt-get update`) when a target is unknown. A preflight order never changes the host.
   */
  mayRefreshIndexes?: boolean;
  /**
   * The order's directory for a dpkg run that changes the host: it runs detached with its pid,
   * output and exit status there, so it finishes even if the agent dies, and a restarted agent
   * waits for it before deciding anything (detached-run.ts). Unset outside orders (preflight, tests).
   */
  runDir?: string;
}

/** What a change resolved to on this host (package changes): shown by preflight, recorded in the result. */
export interface ResolvedDetail {
  packages?: PackageMove[];
}

/** What a dry run learns without changing anything. */
export type PreflightVerdict = (
  | { outcome: 'would_apply'; detail: string }
  | { outcome: 'already_applied'; detail: string }
  | { outcome: 'would_fail'; code: ErrorCode; detail: string }
  | { outcome: 'blocked'; detail: string }
  /** Nothing on this host for the change to act on (a source package none of whose binaries is installed). */
  | { outcome: 'not_applicable'; detail: string }
) &
  ResolvedDetail;

/**
 * One kind of change (file, package). The executor drives every order through the same steps and
 * journals between them: preflight → snapshot → apply → verify, and restore to go back.
 *
 * Every method throws `FleetError` with a precise code on failure. `S` is the driver's snapshot
 * record: plain JSON the journal stores and hands back to `restore`, which must re-validate it.
 */
export interface Driver<C extends Change = Change, S = unknown> {
  readonly kind: C['kind'];
  /** Checks policy and preconditions (drift, versions, locks) without changing anything. */
  preflight(change: C, ctx: DriverContext): Promise<PreflightVerdict>;
  /**
   * Durably captures everything needed to restore the prior state into `dir` (a directory private
   * to this order), verifies what it captured, and returns the record. Throws `snapshot_failed`
   * when it cannot: no apply without an escape hatch. `dir` may not exist yet: a driver that keeps
   * anything makes it first with `makeDirectoryDurably` (its parent fsync'd), else what it syncs
   * into it could be lost with it in a power cut.
   */
  snapshot(change: C, dir: string, ctx: DriverContext): Promise<S>;
  /**
   * Makes the change. Must leave the host at the old or the new state, never between. The executor
   * passes the snapshot: what it recorded (a package set resolved on the host) is what is applied.
   */
  apply(change: C, ctx: DriverContext, snapshot?: S): Promise<void>;
  /** Confirms the change is in place exactly (sha256 / installed versions). */
  verify(change: C, ctx: DriverContext, snapshot?: S): Promise<void>;
  /** Puts the prior state back from the snapshot and confirms it. Throws `revert_failed`. */
  restore(change: C, snapshot: S, dir: string, ctx: DriverContext): Promise<void>;
  /**
   * What the host holds for this change right now, as plain values that are equal exactly when the
   * states are (a file's sha256, size, mode, owner; a package's version and status): a rehearsed
   * revert compares the state before the apply with the state after the revert.
   */
  describe(change: C, ctx: DriverContext): Promise<DescribedState>;
  /** After a crash: removes leftovers of an interrupted apply or restore (temp files). Idempotent. */
  cleanup(change: C, ctx: DriverContext): Promise<void>;
  /** What a journaled snapshot says the change resolved to, for the order's result; undefined if nothing to add. */
  describeSnapshot?(snapshot: unknown, change: C): ResolvedDetail | undefined;
  /**
   * The bytes the order's directory holds for this snapshot (its `dir`, and the order's run
   * directory), exactly, when the record alone says so: the journal's quota then counts them without
   * walking the directory (`JournalUsage`). Undefined, or no such method: the quota walks it.
   */
  keptBytes?(snapshot: unknown): number | undefined;
}
