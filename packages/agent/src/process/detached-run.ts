import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { CommandResult } from './command-runner.js';

/*
 * A command that must outlive the agent: `dpkg --install` and the like. Run with a pipe to the agent,
 * dpkg dies with it (the pipe closes, its next write kills it) and leaves packages half-installed;
 * run like this, it finishes on its own and a restarted agent collects what it did.
 *
 * A tiny fixed shell wrapper (its text never holds data: the run directory and the argv are its
 * positional parameters) writes its pid, runs the program, and records the exit status. The run
 * directory holds `pid`, `stdout`, `stderr` and, once the program has exited, `status`. The wrapper
 * is its own session and process group (detached), so a timeout stops everything the program started.
 */
const WRAPPER = [
  'dir=$1; shift',
  'echo $$ > "$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid"',
  '"$@"',
  'code=$?',
  'echo $code > "$dir/status.tmp" && mv "$dir/status.tmp" "$dir/status"',
].join('\n');

/** How often a wait looks at the run directory. */
const POLL_MS = 50;
/** How long a run directory without a pid may be waited on: the wrapper writes it at once. */
const PID_GRACE_MS = 2_000;
/** Output kept per stream: its tail, where dpkg puts the error. */
const OUTPUT_TAIL_BYTES = 256 * 1024;
const KILL_GRACE_MS = 3_000;

export interface DetachedRunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Runs `argv` (no shell for its data, stdin closed) detached, its output in files under `dir`
 * (emptied first), and waits for it. Resolves like `runCommand`; rejects only when it cannot start.
 */
export async function runDetached(
  argv: readonly string[],
  dir: string,
  options: DetachedRunOptions,
): Promise<CommandResult> {
  if (argv.length === 0) throw Object.assign(new Error('empty command'), { code: 'EINVAL' });
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const out = openSync(join(dir, 'stdout'), 'w', 0o600);
  const err = openSync(join(dir, 'stderr'), 'w', 0o600);
  try {
    const child = spawn('sh', ['-c', WRAPPER, 'fleetpatch-run', dir, ...argv], {
      ...(options.env === undefined ? {} : { env: options.env }),
      cwd: options.cwd,
      stdio: ['ignore', out, err],
      detached: true,
      shell: false,
    });
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve);
      child.once('error', reject);
    });
    // Reaped by Node while the agent lives; the wait below reads the run directory, not the child.
    child.unref();
  } finally {
    closeSync(out);
    closeSync(err);
  }
  return waitForRun(argv, dir, options.timeoutMs);
}

/**
 * After a restart: the last run the previous agent started in `dir`, whose end it may not have
 * seen. Still running, it is waited for (up to `timeoutMs`, then stopped); finished, its status and
 * output are read. Undefined when no run was started there.
 */
export async function settleRun(dir: string, timeoutMs: number): Promise<CommandResult | undefined> {
  const started = await readFile(join(dir, 'stdout')).then(
    () => true,
    () => false,
  );
  return started ? waitForRun([], dir, timeoutMs) : undefined;
}

async function waitForRun(argv: readonly string[], dir: string, timeoutMs: number): Promise<CommandResult> {
  // Waits are measured on the monotonic clock: a wall clock stepped forward would otherwise stop
  // dpkg at once, mid-transaction, as if it had run past its timeout.
  const elapsed = monotonicStopwatch();
  let timedOut = false;
  let killedAt: number | undefined;
  for (;;) {
    const status = await readStatus(dir);
    if (status !== undefined) return result(argv, dir, status, timedOut);
    const pid = await readPid(dir);
    if (pid === undefined) {
      if (elapsed() > PID_GRACE_MS) return result(argv, dir, null, timedOut);
    } else if (!(await isRunAlive(pid, dir))) {
      // Gone without a status: killed (a timeout, or by someone else). One last look for a status.
      return result(argv, dir, (await readStatus(dir)) ?? null, timedOut);
    } else if (elapsed() > timeoutMs) {
      timedOut = true;
      const sinceKill = killedAt === undefined ? undefined : elapsed() - killedAt;
      if (sinceKill === undefined) {
        killedAt = elapsed();
        killGroup(pid, 'SIGTERM');
      } else if (sinceKill > KILL_GRACE_MS) {
        killGroup(pid, 'SIGKILL');
      }
    }
    await delay(POLL_MS);
  }
}

/** Milliseconds since it was made, on the monotonic clock (`performance.now()`). */
function monotonicStopwatch(): () => number {
  const start = performance.now();
  return () => performance.now() - start;
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // Already gone.
  }
}

async function readStatus(dir: string): Promise<number | undefined> {
  const text = await readFile(join(dir, 'status'), 'utf8').catch(() => undefined);
  const code = text === undefined ? Number.NaN : Number.parseInt(text.trim(), 10);
  return Number.isInteger(code) ? code : undefined;
}

async function readPid(dir: string): Promise<number | undefined> {
  const text = await readFile(join(dir, 'pid'), 'utf8').catch(() => undefined);
  const pid = text === undefined ? Number.NaN : Number.parseInt(text.trim(), 10);
  return Number.isInteger(pid) && pid > 1 ? pid : undefined;
}

/**
 * Whether `pid` is still this run's wrapper: alive, and (where /proc tells) its command line names
 * the run directory — a pid reused by another process after a reboot is not waited on.
 */
async function isRunAlive(pid: number, dir: string): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined);
  if (cmdline === undefined) return true;
  // A zombie (exited, not yet reaped) has an empty command line: it is not running.
  return cmdline.split('\0').includes(dir);
}

async function tail(path: string): Promise<string> {
  const file = await open(path, 'r').catch(() => undefined);
  if (!file) return '';
  try {
    const { size } = await file.stat();
    const length = Math.min(size, OUTPUT_TAIL_BYTES);
    const buffer = Buffer.alloc(length);
    await file.read(buffer, 0, length, size - length);
    return buffer.toString('utf8');
  } finally {
    await file.close();
  }
}

async function result(
  argv: readonly string[],
  dir: string,
  exitCode: number | null,
  timedOut: boolean,
): Promise<CommandResult> {
  const [stdout, stderr] = await Promise.all([tail(join(dir, 'stdout')), tail(join(dir, 'stderr'))]);
  return { argv, exitCode, signal: null, stdout, stderr, timedOut, aborted: false };
}
