import { type CheckOfKind, type CheckOutcome, fail, pass } from './check-outcome.js';
import { execForCheck } from './exec-for-check.js';

const MAX_OUTPUT_BYTES = 2048;

export async function runCommandCheck(check: CheckOfKind<'command'>, signal: AbortSignal): Promise<CheckOutcome> {
  const result = await execForCheck(check.argv, {
    timeoutMs: check.timeoutMs,
    signal,
    maxOutputBytes: MAX_OUTPUT_BYTES,
  });
  switch (result.outcome) {
    case 'exited': {
      const observed = withOutput(`exit ${result.exitCode}`, result.stdout, result.stderr);
      return result.exitCode === 0 ? pass(observed) : fail(observed);
    }
    case 'killed':
      return fail(withOutput(`killed by ${result.signal}`, result.stdout, result.stderr));
    case 'timed_out':
      return fail(withOutput(`no exit within ${check.timeoutMs} ms (killed)`, result.stdout, result.stderr));
    case 'aborted':
      return fail('aborted');
    case 'spawn_failed':
      return fail(
        result.code === 'ENOENT'
          ? `cannot run ${check.argv[0]}: not found`
          : `cannot run ${check.argv[0]}: ${result.code} ${result.message}`,
      );
  }
}

function withOutput(head: string, stdout: string, stderr: string): string {
  const parts = [head];
  if (stdout !== '') parts.push(`stdout: ${stdout}`);
  if (stderr !== '') parts.push(`stderr: ${stderr}`);
  return parts.join('; ');
}
