import { spawn } from 'node:child_process';

/** Output kept per stream; longer output keeps its tail, where dpkg and apt put the error. */
const MAX_OUTPUT_CHARS = 256 * 1024;
/** Grace between SIGTERM and SIGKILL when a command is stopped. */
const KILL_GRACE_MS = 3_000;
/** After the program exits, how long its last output may take to arrive through the pipes. */
const OUTPUT_GRACE_MS = 250;

export interface RunOptions {
  env: NodeJS.ProcessEnv;
  timeoutMs: number;
  cwd?: string;
  /**
   * Stops the command (its whole process group) when aborted. Leave it out for commands that must
   * not be interrupted half-way, such as a `dpkg --install`: killing dpkg is what leaves packages
   * half-installed, so those commands only obey `timeoutMs`.
   */
  signal?: AbortSignal;
}

export interface CommandResult {
  argv: readonly string[];
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  aborted: boolean;
}

/**
 * Runs one program with an argument list (never a shell), stdin closed, in its own process group so
 * that a timeout or an abort also stops what it started (`fakeroot` → `dpkg` → maintainer scripts).
 * Resolves with whatever happened; rejects only when the program could not be started at all.
 */
export function runCommand(argv: readonly string[], options: RunOptions): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(new Error('empty command'));
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ argv, exitCode: null, signal: null, stdout: '', stderr: '', timedOut: false, aborted: true });
      return;
    }
    const child = spawn(file, args, {
      env: options.env,
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      shell: false,
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    let outputTimer: NodeJS.Timeout | undefined;
    let settled = false;
    const append = (acc: string, chunk: Buffer): string => {
      const next = acc + chunk.toString('utf8');
      return next.length > MAX_OUTPUT_CHARS ? next.slice(next.length - MAX_OUTPUT_CHARS) : next;
    };
    child.stdout.on('data', (chunk: Buffer) => {
      stdout = append(stdout, chunk);
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = append(stderr, chunk);
    });

    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // The group is already gone.
      }
    };
    const stop = (): void => {
      killGroup('SIGTERM');
      killTimer ??= setTimeout(() => killGroup('SIGKILL'), KILL_GRACE_MS);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, options.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      stop();
    };
    options.signal?.addEventListener('abort', onAbort, { once: true });

    const finish = (): boolean => {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      if (killTimer) clearTimeout(killTimer);
      if (outputTimer) clearTimeout(outputTimer);
      options.signal?.removeEventListener('abort', onAbort);
      return true;
    };
    child.once('error', (err) => {
      if (finish()) reject(err);
    });
    child.once('exit', (exitCode, signal) => {
      // The program is done, so it did not time out. 'close' waits for the pipes too, and a
      // background process it left behind (a daemon a maintainer script started) may hold them for
      // ever: after a short grace for the last output, stop reading and answer with the exit.
      // The group is not killed here: what a package starts on purpose must keep running.
      clearTimeout(timer);
      outputTimer = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        if (finish()) resolve({ argv, exitCode, signal, stdout, stderr, timedOut, aborted });
      }, OUTPUT_GRACE_MS);
    });
    child.once('close', (exitCode, signal) => {
      if (finish()) resolve({ argv, exitCode, signal, stdout, stderr, timedOut, aborted });
    });
  });
}

/** The last lines of a command's output, for error details and logs. */
export function outputTail(result: CommandResult, lines = 20): string {
  const text = `${result.stdout}\n${result.stderr}`.trim();
  return text.split('\n').slice(-lines).join('\n');
}

export function describeExit(result: CommandResult): string {
  if (result.timedOut) return 'timed out';
  if (result.aborted) return 'was cancelled';
  if (result.signal) return `was killed by ${result.signal}`;
  return `exited with status ${result.exitCode}`;
}
