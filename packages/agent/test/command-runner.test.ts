import { describe, expect, it } from 'vitest';
import { runCommand } from '../src/process/command-runner.js';

/** Resolves with the promise, or rejects once `ms` have passed: a hang fails the test instead of stalling it. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`did not return within ${ms} ms`)), ms)),
  ]);
}

describe('runCommand', () => {
  it('returns when the program exits even though a process it left behind holds stdout open', async () => {
    // setsid puts the sleep in its own session, out of reach of the group kill: only not waiting
    // for the pipes to close lets runCommand return. `$!` lets the test clean it up.
    const result = await within(
      // The timeout (30 s) and the leftover (20 s) both outlast the deadline (15 s): returning in time
      // means runCommand waited for neither. A short timeout could fire on a loaded machine before sh exits.
      runCommand(['sh', '-c', 'setsid sleep 20 & echo $!; echo started'], { env: process.env, timeoutMs: 30_000 }),
      15_000,
    );
    const leftover = Number(result.stdout.split('\n')[0]);
    try {
      expect(result.exitCode).toBe(0);
      expect(result.timedOut).toBe(false);
      expect(result.stdout).toContain('started');
    } finally {
      if (Number.isInteger(leftover) && leftover > 0) {
        try {
          process.kill(leftover, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }
  });

  it('still stops a program that outlives its timeout', async () => {
    const result = await within(runCommand(['sleep', '20'], { env: process.env, timeoutMs: 200 }), 15_000);
    expect(result.timedOut).toBe(true);
    expect(result.signal).toBe('SIGTERM');
  });

  it('keeps all the output of a program that exits normally', async () => {
    const result = await runCommand(['sh', '-c', 'echo out; echo err >&2; exit 3'], {
      env: process.env,
      timeoutMs: 5_000,
    });
    expect(result).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
  });
});
