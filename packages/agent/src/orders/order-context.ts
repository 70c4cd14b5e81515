import {
  type AfterChangeReport,
  type Change,
  ErrorCode,
  type HealthCheckResult,
  isFleetError,
  type OrderPhase,
  type OrderResultBody,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import type { Clock } from '../clock.js';
import type { Driver, DriverContext, ResolvedDetail } from '../drivers/driver.js';
import type { HealthRunner } from '../health/health-runner.js';
import type { Journal, JournalEntry } from '../journal.js';
import type { CheckOptions, PreconditionChecker, PreconditionVerdict } from '../preconditions/precondition-check.js';
import type { AfterChange, RebootState } from '../services/after-change.js';
import { fitResult } from '../wire-fit.js';
import { TargetLock } from './target-lock.js';

/** What the executor tells the outside world; the connection forwards it when it can. */
export interface ExecutorEvents {
  /** `failingPolls`: with `health`, the polls in a row that had a failing check (protocol 5). */
  progress(
    orderId: string,
    phase: OrderPhase,
    message?: string,
    health?: HealthCheckResult[],
    failingPolls?: number,
  ): void;
  result(result: OrderResultBody): void;
}

export type DriverSet = { [K in Change['kind']]?: Driver<Extract<Change, { kind: K }>, unknown> };

/** A result before the journal stamps it with the order id and the time it finished. */
export type ResultDraft = Omit<OrderResultBody, 'orderId' | 'finishedAt'>;

export interface OrderContextOptions {
  journal: Journal;
  drivers: DriverSet;
  health: HealthRunner;
  clock: Clock;
  log: Logger;
  events: ExecutorEvents;
  /**
   * Test-only crash points: called with a checkpoint name after each durable step. The daemon's
   * main wires it to SIGKILL itself when `FLEETPATCH_TEST_CRASH_AT` names the checkpoint.
   */
  checkpoint?: (name: string) => void;
  /** Restarts and the stale-library and reboot report after a change; absent: neither (unit tests). */
  afterChange?: AfterChange;
  /** Checks a change's host preconditions; absent: a change that has some fails them (the executor always sets it). */
  preconditions?: PreconditionChecker;
}

/**
 * What the phases of every order share: the journal, the drivers, the health runner, the events,
 * and the two locks. One per executor; the apply phases, the restores and the bake watch act
 * through it, so that a result is always journaled, checkpointed and reported the same way.
 */
export class OrderContext {
  readonly journal: Journal;
  readonly health: HealthRunner;
  readonly events: ExecutorEvents;
  readonly log: Logger;
  /** Files and packages an apply or a restore is changing right now (see targetOf). */
  readonly targets = new TargetLock();
  /** Apply orders a revert is restoring right now: no bake may start or act on them meanwhile. */
  readonly reverting = new TargetLock();
  private readonly options: OrderContextOptions;

  constructor(options: OrderContextOptions) {
    this.options = options;
    this.journal = options.journal;
    this.health = options.health;
    this.events = options.events;
    this.log = options.log;
  }

  driverFor(change: Change): Driver<Change, unknown> | undefined {
    return this.options.drivers[change.kind] as Driver<Change, unknown> | undefined;
  }

  /**
   * The reboot flag before a change; undefined when it cannot be read (then only `.pkgs` can tell),
   * and when the after-change report will not be made (a file change that restarts nothing): then
   * nothing reads it, and it is not read.
   */
  async rebootBefore(change: Change, when: 'apply' | 'revert', log: Logger): Promise<RebootState | undefined> {
    if (this.options.afterChange?.reportsOn(change, when) !== true) return undefined;
    return this.options.afterChange.rebootBefore().catch((err: unknown) => {
      log.warn({ err }, 'cannot read the reboot flag');
      return undefined;
    });
  }

  /** The patch's units restarted after `when`, and what the host looks like then (see AfterChange). */
  async afterChange(
    change: Change,
    when: 'apply' | 'revert',
    before: RebootState | undefined,
    signal: AbortSignal,
    log: Logger,
  ): Promise<AfterChangeReport | undefined> {
    return this.options.afterChange?.run(change, when, before, signal, log).catch((err: unknown) => {
      log.error({ err }, 'after-change report failed');
      return undefined;
    });
  }

  /** `orderId`: the order that may change the host here; its dpkg runs keep their state in its directory. */
  driverContext(signal: AbortSignal, log: Logger, orderId?: string): DriverContext {
    return { signal, log, ...(orderId === undefined ? {} : { runDir: this.journal.runDir(orderId) }) };
  }

  /** The change's host preconditions on this host (`change.requires`); none: they hold. */
  async checkPreconditions(change: Change, signal: AbortSignal, options?: CheckOptions): Promise<PreconditionVerdict> {
    if (change.requires === undefined) return { ok: true, outcomes: [], reason: '', unchecked: '' };
    const checker = this.options.preconditions;
    if (checker === undefined) {
      return { ok: false, outcomes: [], reason: 'this agent cannot check host preconditions', unchecked: '' };
    }
    return checker.check(change.requires, signal, options);
  }

  checkpoint(name: string): void {
    this.options.checkpoint?.(name);
  }

  now(): string {
    return new Date(this.options.clock.now()).toISOString();
  }

  /** Journals the order's result, then reports it. */
  async finish(entry: JournalEntry, result: ResultDraft): Promise<void> {
    const body: OrderResultBody = {
      orderId: entry.orderId,
      finishedAt: this.finishedAt(entry.orderId),
      ...this.resolvedDetail(entry),
      ...fitResult(result),
    };
    await this.journal.finish(entry, body, result.changed);
    this.checkpoint(`${entry.kind}:done`);
    this.events.result(body);
  }

  /** What the apply's snapshot says it resolved to (a package set on this host), for its result. */
  private resolvedDetail(entry: JournalEntry): ResolvedDetail {
    if (entry.kind !== 'apply' || entry.snapshot === undefined) return {};
    return this.driverFor(entry.order.change)?.describeSnapshot?.(entry.snapshot, entry.order.change) ?? {};
  }

  /**
   * A second result of an order (a failure during bake) must not share the first one's finishedAt:
   * the coordinator acks by it, and an ack of the first must not acknowledge the second.
   */
  private finishedAt(orderId: string): string {
    const now = this.options.clock.now();
    const previous = this.journal.get(orderId)?.result?.finishedAt;
    const after = previous === undefined ? Number.NaN : Date.parse(previous);
    return new Date(Number.isNaN(after) || now > after ? now : after + 1).toISOString();
  }
}

export function codeOf(err: unknown): ErrorCode {
  return isFleetError(err) ? err.code : ErrorCode.internal;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
