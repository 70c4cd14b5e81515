import { type CheckOfKind, type CheckOutcome, fail, pass } from './check-outcome.js';
import { execForCheck } from './exec-for-check.js';

/**
 * `systemctl is-active <unit>`: exit 0 means active. Without `--quiet` so the state it prints
 * ("failed", "activating", "inactive") lands in `observed`; the exit code alone decides.
 */
export async function runSystemdCheck(check: CheckOfKind<'systemd'>, signal: AbortSignal): Promise<CheckOutcome> {
  const result = await execForCheck(['systemctl', 'is-active', '--', check.unit], {
    timeoutMs: check.timeoutMs,
    signal,
    maxOutputBytes: 512,
  });
  switch (result.outcome) {
    case 'exited': {
      const state = result.stdout.split('\n')[0]?.trim() ?? '';
      const seen = state === '' ? `${check.unit} state unknown` : `${check.unit} is ${state}`;
      if (result.exitCode === 0) return pass(seen);
      // systemctl prints the real reason (no systemd as PID 1, no bus) on stderr.
      const why = result.stderr === '' ? '' : `: ${result.stderr.replace(/\s+/g, ' ')}`;
      return fail(`${seen} (systemctl exit ${result.exitCode})${why}`);
    }
    case 'killed':
      return fail(`systemctl killed by ${result.signal}`);
    case 'timed_out':
      return fail(`systemctl did not answer within ${check.timeoutMs} ms`);
    case 'aborted':
      return fail('aborted');
    case 'spawn_failed':
      return fail(
        result.code === 'ENOENT'
          ? `cannot check ${check.unit}: systemctl not found (host does not run systemd?)`
          : `cannot run systemctl: ${result.code} ${result.message}`,
      );
  }
}
