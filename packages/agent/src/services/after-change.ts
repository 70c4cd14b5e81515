import {
  type AfterChangeReport,
  type Change,
  MAX_STALE_PROCESSES,
  type PackageChange,
  packageTargetsOf,
  type UnitRestart,
} from '@fleetpatch/shared';
import type { Logger } from 'pino';
import { runCommand } from '../process/command-runner.js';
import { type RebootState, readRebootState, rebootCausedBy } from './reboot-required.js';
import type { ServiceManager } from './service-manager.js';
import { findStaleProcesses, parseNeedrestartBatch } from './stale-processes.js';

export type { RebootState } from './reboot-required.js';

export interface AfterChangeOptions {
  services: ServiceManager;
  /** Where processes are read from. */
  procDir: string;
  /** The dpkg root: `<root>/var/run/reboot-required` is read. */
  root: string;
  /** `needrestart` (its argv, `-b` is added), or null to rely on /proc alone. */
  needrestart: readonly string[] | null;
}

/**
 * What follows a change on the host, and its revert: the patch's units restarted (in order, each
 * reported), then — for a package change — the processes still on deleted or replaced code and the
 * reboot flag. The health checks run after this, so they see the restarted services.
 */
export class AfterChange {
  constructor(private readonly options: AfterChangeOptions) {}

  /** The reboot flag before a change, so that the report can say whether this change set it. */
  rebootBefore(): Promise<RebootState> {
    return readRebootState(this.options.root);
  }

  /** Whether `run` has anything to report for `change` (else it returns undefined, reading nothing). */
  reportsOn(change: Change, when: UnitRestart['when']): boolean {
    return change.kind === 'package' || unitsOf(change, when).length > 0;
  }

  /** Undefined when there is nothing to report: a file change that restarts nothing. */
  async run(
    change: Change,
    when: UnitRestart['when'],
    before: RebootState | undefined,
    signal: AbortSignal,
    log: Logger,
  ): Promise<AfterChangeReport | undefined> {
    if (!this.reportsOn(change, when)) return undefined;
    const units = unitsOf(change, when);
    const restarts: UnitRestart[] = [];
    for (const unit of units) {
      const outcome = await this.options.services.restart(unit, when, signal);
      (outcome.ok ? log.info : log.warn).call(log, { unit, when, detail: outcome.detail }, 'service restarted');
      restarts.push(outcome);
    }
    // Only a package change replaces code under running processes; a file change reports its restarts.
    const isPackage = change.kind === 'package';
    const stale = isPackage
      ? await findStaleProcesses(this.options.procDir).catch((err: unknown) => {
          log.warn({ err }, 'cannot read processes for stale libraries');
          return [];
        })
      : [];
    const needrestartUnits = isPackage ? await this.needrestartUnits(signal, log) : undefined;
    const staleUnits = [
      ...new Set([...stale.flatMap((p) => (p.unit ? [p.unit] : [])), ...(needrestartUnits ?? [])]),
    ].slice(0, MAX_STALE_PROCESSES);
    const after = await readRebootState(this.options.root);
    return {
      restarts,
      staleSource: needrestartUnits ? 'needrestart' : 'proc-maps',
      staleProcesses: stale.slice(0, MAX_STALE_PROCESSES),
      moreStaleProcesses: Math.max(0, stale.length - MAX_STALE_PROCESSES),
      staleUnits,
      reboot: {
        required: after.required,
        causedByThisChange: rebootCausedBy(before, after, isPackage ? namedPackagesOf(change) : []),
        packages: after.packages,
      },
    };
  }

  private async needrestartUnits(signal: AbortSignal, log: Logger): Promise<string[] | undefined> {
    if (!this.options.needrestart) return undefined;
    const result = await runCommand([...this.options.needrestart, '-b'], { timeoutMs: 60_000, signal }).catch(
      () => undefined,
    );
    if (result?.exitCode !== 0) {
      if (result) log.warn({ exitCode: result.exitCode }, 'needrestart -b failed; /proc alone says what is stale');
      return undefined;
    }
    return parseNeedrestartBatch(result.stdout);
  }
}

/** The restarts of a report that failed, as one line for a result's reason; empty when none did. */
export function failedRestarts(report: AfterChangeReport | undefined): string {
  return (report?.restarts ?? [])
    .filter((r) => !r.ok)
    .map((r) => `restart of ${r.unit} failed: ${r.detail}`)
    .join('; ');
}

/** Two reports of one order (its apply, then the restore that followed) as one. */
export function mergeReports(
  first: AfterChangeReport | undefined,
  second: AfterChangeReport | undefined,
): AfterChangeReport | undefined {
  if (!first || !second) return second ?? first;
  return { ...second, restarts: [...first.restarts, ...second.restarts] };
}

/**
 * The binary packages a change names itself. A source change names none until the host resolves it,
 * so for it only the flag appearing during this change counts as caused by it.
 */
function namedPackagesOf(change: PackageChange): string[] {
  const targets = packageTargetsOf(change);
  return targets.kind === 'members' ? targets.members.map((m) => m.name) : [];
}

function unitsOf(change: Change, when: UnitRestart['when']): readonly string[] {
  return (when === 'apply' ? change.restart?.afterApply : change.restart?.afterRevert) ?? [];
}
