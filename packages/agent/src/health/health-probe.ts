import { type HealthCheck, type HealthCheckResult, isFleetError } from '@fleetpatch/shared';
import { type Clock, systemClock } from '../clock.js';
import { resolveSafePath } from '../drivers/safe-path.js';
import { AgentPolicy } from '../policy/agent-policy.js';
import { fitObserved } from '../wire-fit.js';
import { assertNever, checkLabel } from './check-label.js';
import { type CheckOfKind, type CheckOutcome, describeError, fail } from './check-outcome.js';
import { runCommandCheck } from './command-check.js';
import { runFileCheck } from './file-check.js';
import { runHttpCheck } from './http-check.js';
import { runMetricCheck } from './metric-check.js';
import { runProcessCheck } from './process-check.js';
import { runSystemdCheck } from './systemd-check.js';
import { runTcpCheck } from './tcp-check.js';

/**
 * Runs one health check. Never throws: whatever goes wrong, including an abort, is an `ok: false`
 * result whose `observed` says why, so the runner has one shape to judge.
 */
export interface HealthProbe {
  run(check: HealthCheck, signal: AbortSignal): Promise<HealthCheckResult>;
}

export interface SystemHealthProbeOptions {
  /** The directory standing for `/` (a test root, a chroot); file checks look under it. */
  rootDir: string;
  /**
   * The agent policy: where http and tcp checks may connect (checked again at each connection) and
   * where file checks may look. The executor refuses an order before this point; this is the second line.
   */
  policy?: AgentPolicy;
  clock?: Clock;
}

/** The probe that looks at the real host: processes, sockets, files, systemd, /proc. */
export class SystemHealthProbe implements HealthProbe {
  private readonly rootDir: string;
  private readonly policy: AgentPolicy;
  private readonly clock: Clock;

  constructor(options: SystemHealthProbeOptions) {
    this.rootDir = options.rootDir;
    this.policy = options.policy ?? new AgentPolicy();
    this.clock = options.clock ?? systemClock;
  }

  async run(check: HealthCheck, signal: AbortSignal): Promise<HealthCheckResult> {
    let outcome: CheckOutcome;
    try {
      outcome = await this.dispatch(check, signal);
    } catch (err) {
      // Each check handles its own failures; this is the backstop for the unforeseen.
      outcome = fail(`check crashed: ${describeError(err)}`);
    }
    return {
      check: checkLabel(check),
      kind: check.kind,
      ok: outcome.ok,
      // The wire caps `observed`; a check that says more is cut here rather than rejected there.
      observed: fitObserved(outcome.observed),
      at: new Date(this.clock.now()).toISOString(),
    };
  }

  private dispatch(check: HealthCheck, signal: AbortSignal): Promise<CheckOutcome> {
    switch (check.kind) {
      case 'command':
        return runCommandCheck(check, signal);
      case 'http':
        return runHttpCheck(check, signal, this.policy.rules.health.allowedDestinations);
      case 'tcp':
        return runTcpCheck(check, signal, this.policy.rules.health.allowedDestinations);
      case 'systemd':
        return runSystemdCheck(check, signal);
      case 'process':
        return runProcessCheck(check, signal);
      case 'file':
        return this.fileCheck(check, signal);
      case 'metric':
        return runMetricCheck(check, signal);
      default:
        return assertNever(check);
    }
  }

  /** Under the allowed roots, not a sensitive path, no symlinked or foreign-writable parent, O_NOFOLLOW. */
  private async fileCheck(check: CheckOfKind<'file'>, signal: AbortSignal): Promise<CheckOutcome> {
    const judged = await this.policy.checkHealthCheck(check);
    if (!judged.ok) return fail(`refused by the agent policy: ${judged.reason}`);
    let hostPath: string;
    try {
      hostPath = (await resolveSafePath(this.rootDir, check.path, ['/'], 'read')).hostPath;
    } catch (err) {
      if (isFleetError(err) && err.details?.reason === 'missing_parent') return fail(`${check.path} does not exist`);
      return fail(describeError(err));
    }
    return runFileCheck(check, hostPath, signal);
  }
}
