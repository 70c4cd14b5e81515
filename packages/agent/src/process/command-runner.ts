import { spawn } from 'node:child_process';
import { captureOutput, type OutputCap } from './captured-output.js';

/** Output kept per stream unless told otherwise; longer output keeps its tail, where dpkg and apt put the error. */
const DEFAULT_OUTPUT_CAP: OutputCap = { keep: 'tail', maxChars: 256 * 1024 };
/** Grace between SIGTERM and SIGKILL when a command is stopped, unless told otherwise. */
const DEFAULT_KILL_GRACE_MS = 3_000;
/** After the program exits, how long its last output may take to arrive through the pipes. */
const OUTPUT_GRACE_MS = 250;

export interface RunOptions {
  timeoutMs: number;
  /** Default: the agent's own environment. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /**
   * Stops the command (its whole process group) when aborted. Leave it out for commands that must
   * not be interrupted half-way, such as a `dpkg --install`: killing dpkg is what leaves packages
   * half-installed, so those commands only obey `timeoutMs`.
   */
  signal?: AbortSignal;
  /** What is kept of each of stdout and stderr. Default: the last 256 kB characters. */
  output?: OutputCap;
  /** Between SIGTERM and SIGKILL when the command is stopped; 0 sends SIGKILL at once. Default 3 s. */
  killGraceMs?: number;
  /**
   * What becomes of processes the program leaves behind in its group once it has exited: `keep`
   * them (a daemon a maintainer script started on purpose must keep running) or `kill` them (a
   * health check must not leave anything behind). Either way the runner does not wait for them.
   */
  leftovers?: 'keep' | 'kill';
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
 * Resolves with whatever happened; rejects only when the program could not be started at all (the
 * error's `code` says why: ENOENT, EACCES…). The one way the agent runs programs: drivers and
 * health checks alike.
 */
export function runCommand(argv: readonly string[], options: RunOptions): Promise<CommandResult> {
  const [file, ...args] = argv;
  if (file === undefined) return Promise.reject(Object.assign(new Error('empty command'), { code: 'EINVAL' }));
  const killGraceMs = options.killGraceMs ?? DEFAULT_KILL_GRACE_MS;
  return new Promise((resolve, reject) => {
    if (options.signal?.aborted) {
      resolve({ argv, exitCode: null, signal: null, stdout: '', stderr: '', timedOut: false, aborted: true });
      return;
    }
    const child = spawn(file, args, {
      ...(options.env === undefined ? {} : { env: options.env }),
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
      shell: false,
    });
    const stdout = captureOutput(options.output ?? DEFAULT_OUTPUT_CAP);
    const stderr = captureOutput(options.output ?? DEFAULT_OUTPUT_CAP);
    let timedOut = false;
    let aborted = false;
    let killTimer: NodeJS.Timeout | undefined;
    let outputTimer: NodeJS.Timeout | undefined;
    let settled = false;
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));

    const killGroup = (sig: NodeJS.Signals): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, sig);
      } catch {
        // The group is already gone.
      }
    };
    const stop = (): void => {
      if (killGraceMs <= 0) {
        killGroup('SIGKILL');
        return;
      }
      killGroup('SIGTERM');
      killTimer ??= setTimeout(() => killGroup('SIGKILL'), killGraceMs);
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
    const result = (exitCode: number | null, signal: NodeJS.Signals | null): CommandResult => ({
      argv,
      exitCode,
      signal,
      stdout: stdout.text(),
      stderr: stderr.text(),
      timedOut,
      aborted,
    });
    child.once('error', (err) => {
      if (finish()) reject(err);
    });
    child.once('exit', (exitCode, signal) => {
      // The program is done, so it did not time out. 'close' waits for the pipes too, and a
      // background process it left behind may hold them for ever: after a short grace for the last
      // output, stop reading and answer with the exit.
      clearTimeout(timer);
      outputTimer = setTimeout(() => {
        if (options.leftovers === 'kill') killGroup('SIGKILL');
        child.stdout.destroy();
        child.stderr.destroy();
        if (finish()) resolve(result(exitCode, signal));
      }, OUTPUT_GRACE_MS);
    });
    child.once('close', (exitCode, signal) => {
      if (finish()) resolve(result(exitCode, signal));
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
