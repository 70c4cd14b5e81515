import type { HealthCheck, HealthCheckResult } from '@fleetpatch/shared';
import { type Clock, systemClock } from '../clock.js';
import { fitObserved } from '../wire-fit.js';
import { assertNever, checkLabel } from './check-label.js';
import { type CheckOutcome, describeError, fail } from './check-outcome.js';
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
  /** Maps a path as the patch names it to where it lives for this agent (a test root, a chroot). */
  resolveHostPath: (patchPath: string) => string;
  clock?: Clock;
}

/** The probe that looks at the real host: processes, sockets, files, systemd, /proc. */
export class SystemHealthProbe implements HealthProbe {
  private readonly resolveHostPath: (patchPath: string) => string;
  private readonly clock: Clock;

  constructor(options: SystemHealthProbeOptions) {
    this.resolveHostPath = options.resolveHostPath;
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
        return runHttpCheck(check, signal);
      case 'tcp':
        return runTcpCheck(check, signal);
      case 'systemd':
        return runSystemdCheck(check, signal);
      case 'process':
        return runProcessCheck(check, signal);
      case 'file':
        return runFileCheck(check, this.resolveHostPath(check.path), signal);
      case 'metric':
        return runMetricCheck(check, signal);
      default:
        return assertNever(check);
    }
  }
}
