import {
  describePrecondition,
  type HealthCheck,
  InvalidDebianVersion,
  isCommandPrecondition,
  isFilePrecondition,
  type PackagePrecondition,
  type Precondition,
  type PreconditionOutcome,
  parseVersionConstraint,
  versionsRelate,
} from '@fleetpatch/shared';
import type { HealthRunner } from '../health/health-runner.js';
import type { AgentPolicy } from '../policy/agent-policy.js';
import { fitObserved } from '../wire-fit.js';
import type { InstalledPackages, PackageInstance } from './installed-packages.js';

/** A command precondition without its own `timeoutMs`: as a command health check. */
const DEFAULT_COMMAND_TIMEOUT_MS = 5_000;

export interface PreconditionVerdict {
  ok: boolean;
  outcomes: PreconditionOutcome[];
  /** Every failing precondition and what the host showed, one sentence; empty when all hold. */
  reason: string;
  /** Why some were not checked (commands at an unsigned dry run, see `CheckOptions`); empty when all were. */
  unchecked: string;
}

export interface CheckOptions {
  /**
   * `skip`: command preconditions do not run, and neither hold nor fail. An agent that requires
   * signed orders runs programs only under a signed statement; a dry run (`order.preflight`) carries
   * none, so a stolen coordinator must not be able to make it run one at will.
   */
  commands: 'run' | 'skip';
}

/** What a dry run says of the command preconditions it did not run. */
export const COMMANDS_NOT_RUN =
  'command preconditions not run by this dry run: this agent requires signed orders, and runs programs only under one (they run at apply)';

export interface PreconditionCheckerOptions {
  /** Runs file and command preconditions as the matching health checks (limits, output caps, no shell). */
  health: HealthRunner;
  /** Judged again before each precondition runs (the executor refused the order already if it breaks a rule). */
  policy: AgentPolicy;
  /** The dpkg database package preconditions read; absent: they fail, saying the agent reads none. */
  packages?: InstalledPackages;
}

/**
 * Checks a change's host preconditions (`change.requires`): each one runs, none stops the others, so
 * the answer names every one that does not hold. A file precondition is a file health check and a
 * command precondition a command health check, under the same policy (`health.allowedFileRoots`,
 * `health.allowedCommands`): a precondition can probe nothing a health check could not.
 */
export class PreconditionChecker {
  constructor(private readonly options: PreconditionCheckerOptions) {}

  async check(
    requires: readonly Precondition[] | undefined,
    signal: AbortSignal,
    options: CheckOptions = { commands: 'run' },
  ): Promise<PreconditionVerdict> {
    const skip = (p: Precondition) => options.commands === 'skip' && isCommandPrecondition(p);
    const skipped = (requires ?? []).filter(skip);
    const checked = (requires ?? []).filter((p) => !skip(p));
    const outcomes = await Promise.all(checked.map((p) => this.outcomeOf(p, signal)));
    signal.throwIfAborted();
    const failing = outcomes.filter((outcome) => !outcome.ok);
    return {
      ok: failing.length === 0,
      outcomes,
      unchecked: skipped.length === 0 ? '' : `${COMMANDS_NOT_RUN}: ${skipped.map(describePrecondition).join(', ')}`,
      reason:
        failing.length === 0
          ? ''
          : `host preconditions not met (${failing.length} of ${checked.length}): ${failing
              .map((outcome) => `${outcome.precondition}: ${outcome.observed}`)
              .join('; ')}`,
    };
  }

  private async outcomeOf(p: Precondition, signal: AbortSignal): Promise<PreconditionOutcome> {
    const { ok, observed } = await this.judge(p, signal);
    // The wire caps each one: a description or an observation that says more is cut here.
    return { precondition: fitObserved(describePrecondition(p)), ok, observed: fitObserved(observed) };
  }

  private async judge(p: Precondition, signal: AbortSignal): Promise<{ ok: boolean; observed: string }> {
    const judged = await this.options.policy.checkPrecondition(p);
    if (!judged.ok) return { ok: false, observed: `refused by the agent policy: ${judged.reason}` };
    const check = healthCheckOf(p);
    if (check === undefined) return this.packageOutcome(p as PackagePrecondition, signal);
    const [result] = (await this.options.health.runOnce([check], signal)).results;
    return { ok: result?.ok === true, observed: result?.observed ?? 'no result' };
  }

  private async packageOutcome(
    p: PackagePrecondition,
    signal: AbortSignal,
  ): Promise<{ ok: boolean; observed: string }> {
    const { packages } = this.options;
    if (packages === undefined) return { ok: false, observed: 'this agent reads no dpkg database' };
    let instances: PackageInstance[];
    try {
      instances = await packages.instancesOf(p.package, signal);
    } catch (err) {
      signal.throwIfAborted();
      return { ok: false, observed: `cannot read the dpkg database: ${(err as Error).message}` };
    }
    return judgePackage(p, instances);
  }
}

/** The health check a file or command precondition runs as; undefined for a package precondition. */
function healthCheckOf(p: Precondition): HealthCheck | undefined {
  if (isFilePrecondition(p)) return { kind: 'file', path: p.file, ...(p.sha256 ? { sha256: p.sha256 } : {}) };
  if (isCommandPrecondition(p)) {
    return { kind: 'command', argv: p.command, timeoutMs: p.timeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS };
  }
  return undefined;
}

/** dpkg states in which a package has no files on the host: for a precondition, it is absent. */
const ABSENT_STATES = new Set(['not-installed', 'config-files']);
/** Configured: `installed`, or configured with triggers still to run (dpkg lets these satisfy a Depends too). */
const INSTALLED_STATES = new Set(['installed', 'triggers-pending', 'triggers-awaited']);

/**
 * Installed means configured (`INSTALLED_STATES`). A package half-way (unpacked, half-configured, …)
 * is neither installed nor absent and fails even with `allowAbsent`. Every installed instance (one per
 * architecture) must satisfy the version, compared as dpkg compares (debian-version.ts).
 */
export function judgePackage(
  p: PackagePrecondition,
  instances: readonly PackageInstance[],
): {
  ok: boolean;
  observed: string;
} {
  const name = p.package;
  const broken = instances.find((i) => !INSTALLED_STATES.has(i.state) && !ABSENT_STATES.has(i.state));
  if (broken) return { ok: false, observed: `${name} ${broken.version} is ${broken.state} (dpkg), not installed` };
  const installed = instances.filter((i) => INSTALLED_STATES.has(i.state));
  if (installed.length === 0) {
    return p.allowAbsent === true
      ? { ok: true, observed: `${name} is not installed (allowed)` }
      : { ok: false, observed: `${name} is not installed` };
  }
  const shown = installed.map((i) => `${name}:${i.architecture} ${i.version}`).join(', ');
  if (p.version === undefined) return { ok: true, observed: `${shown} installed` };
  const constraint = parseVersionConstraint(p.version);
  // Unreachable: the schema parsed it; judged anyway, as the last line of defence on the host.
  if (typeof constraint === 'string') return { ok: false, observed: `version constraint: ${constraint}` };
  try {
    const failing = installed.filter((i) => !versionsRelate(i.version, constraint.relation, constraint.version));
    const needs = `${constraint.operator} ${constraint.version}`;
    return failing.length === 0
      ? { ok: true, observed: `${shown} installed, satisfies ${needs}` }
      : { ok: false, observed: `${shown} installed, needs ${needs}` };
  } catch (err) {
    if (err instanceof InvalidDebianVersion) return { ok: false, observed: `installed ${err.message}` };
    throw err;
  }
}
