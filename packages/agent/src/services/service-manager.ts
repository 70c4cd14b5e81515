import type { UnitRestart } from '@fleetpatch/shared';
import { type CommandResult, describeExit, outputTail, runCommand } from '../process/command-runner.js';

/** Restarts one service; never throws for a failed restart: the outcome says what happened. */
export interface ServiceManager {
  restart(unit: string, when: UnitRestart['when'], signal: AbortSignal): Promise<UnitRestart>;
}

export interface SystemdServiceManagerOptions {
  /**
   * How systemctl is run: the program and any arguments before the verb. Default `['systemctl']`.
   * A test points it at a systemd of its own, e.g. `['nsenter', '-t', PID, '-m', '-p', '--', 'systemctl']`.
   */
  systemctl?: readonly string[];
  /** Upper bound of one restart (a unit whose stop hangs). Default 90 s, systemd's own default stop timeout. */
  timeoutMs?: number;
}

/**
 * `systemctl restart -- <unit>` (an argument list, never a shell; `--` so that no unit name can
 * become an option), with a timeout and its output captured. Waits for the job as systemctl does:
 * the unit is up again (or failed) when it returns.
 */
export class SystemdServiceManager implements ServiceManager {
  private readonly systemctl: readonly string[];
  private readonly timeoutMs: number;

  constructor(options: SystemdServiceManagerOptions = {}) {
    this.systemctl = options.systemctl ?? ['systemctl'];
    this.timeoutMs = options.timeoutMs ?? 90_000;
    if (this.systemctl.length === 0) throw new Error('systemctl command is empty');
  }

  /** The argv of one restart: exactly what runs. */
  restartArgv(unit: string): string[] {
    return [...this.systemctl, 'restart', '--no-ask-password', '--', unit];
  }

  async restart(unit: string, when: UnitRestart['when'], signal: AbortSignal): Promise<UnitRestart> {
    // How long it took, on the monotonic clock: a wall clock stepped back meanwhile made `ms` negative,
    // a result neither the coordinator's protocol nor the agent's own journal accepts.
    const started = performance.now();
    let result: CommandResult;
    try {
      result = await runCommand(this.restartArgv(unit), { timeoutMs: this.timeoutMs, signal });
    } catch (err) {
      return { unit, when, ok: false, detail: `cannot run ${this.systemctl[0]}: ${(err as Error).message}`, ms: 0 };
    }
    const ms = Math.round(performance.now() - started);
    if (result.exitCode === 0) return { unit, when, ok: true, detail: '', ms };
    const tail = outputTail(result, 5);
    const detail = `${describeExit(result)}${tail ? `: ${tail}` : ''}`.slice(0, 2000);
    return { unit, when, ok: false, detail, ms };
  }
}
