import { runCommand } from '../process/command-runner.js';

export interface ExecForCheckOptions {
  timeoutMs: number;
  signal: AbortSignal;
  /** Bytes kept of each of stdout and stderr; the rest is read and dropped. */
  maxOutputBytes: number;
}

export type ExecOutcome =
  | { outcome: 'exited'; exitCode: number; stdout: string; stderr: string }
  | { outcome: 'killed'; signal: string; stdout: string; stderr: string }
  | { outcome: 'timed_out'; stdout: string; stderr: string }
  | { outcome: 'aborted' }
  | { outcome: 'spawn_failed'; code: string; message: string };

/**
 * A program run the way a health check needs it: the agent's one runner, told to keep the first
 * words of the output, to SIGKILL at once (a check has no state to save) and to kill what the
 * program left behind, so a check can neither hang on nor leave behind what it forked. Never
 * rejects: each way it can end is one case for the check to judge.
 */
export async function execForCheck(argv: readonly string[], options: ExecForCheckOptions): Promise<ExecOutcome> {
  try {
    const result = await runCommand(argv, {
      timeoutMs: options.timeoutMs,
      signal: options.signal,
      output: { keep: 'head', maxBytes: options.maxOutputBytes },
      killGraceMs: 0,
      leftovers: 'kill',
    });
    const out = { stdout: result.stdout, stderr: result.stderr };
    if (result.aborted) return { outcome: 'aborted' };
    if (result.timedOut) return { outcome: 'timed_out', ...out };
    if (result.exitCode !== null) return { outcome: 'exited', exitCode: result.exitCode, ...out };
    return { outcome: 'killed', signal: result.signal ?? 'unknown signal', ...out };
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    return { outcome: 'spawn_failed', code: code ?? 'UNKNOWN', message };
  }
}
