import { spawn } from 'node:child_process';

export interface CappedExecOptions {
  timeoutMs: number;
  signal: AbortSignal;
  /** Bytes kept of each of stdout and stderr; the rest is read and dropped. */
  maxOutputBytes: number;
}

export type CappedExecResult =
  | { outcome: 'exited'; exitCode: number; stdout: string; stderr: string }
  | { outcome: 'killed'; signal: string; stdout: string; stderr: string }
  | { outcome: 'timed_out'; stdout: string; stderr: string }
  | { outcome: 'aborted' }
  | { outcome: 'spawn_failed'; code: string; message: string };

/**
 * Runs argv without a shell, stdin closed, output captured up to a cap. Unlike `execFile`'s
 * `maxBuffer`, a chatty command is not killed for talking: only the first bytes are kept.
 * The child leads its own process group so a timeout also kills whatever it forked; otherwise a
 * backgrounded grandchild holding stdout open would keep the check hanging.
 */
export function cappedExec(argv: readonly string[], options: CappedExecOptions): Promise<CappedExecResult> {
  const [file, ...args] = argv;
  if (file === undefined) {
    return Promise.resolve({ outcome: 'spawn_failed', code: 'EINVAL', message: 'empty argv' });
  }
  if (options.signal.aborted) return Promise.resolve({ outcome: 'aborted' });

  return new Promise((resolve) => {
    const child = spawn(file, args, { shell: false, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const stdout = new CappedBuffer(options.maxOutputBytes);
    const stderr = new CappedBuffer(options.maxOutputBytes);
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));

    let stoppedBy: 'timeout' | 'abort' | undefined;
    let settled = false;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const stop = (why: 'timeout' | 'abort'): void => {
      stoppedBy ??= why;
      killGroup();
    };
    const timer = setTimeout(() => stop('timeout'), options.timeoutMs);
    const onAbort = (): void => stop('abort');
    options.signal.addEventListener('abort', onAbort, { once: true });

    const finish = (result: CappedExecResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      options.signal.removeEventListener('abort', onAbort);
      resolve(result);
    };

    child.once('error', (err: NodeJS.ErrnoException) => {
      finish({ outcome: 'spawn_failed', code: err.code ?? 'UNKNOWN', message: err.message });
    });
    child.once('exit', () => {
      // A grandchild may still hold the pipes open; give the last output a moment, then stop
      // waiting and end the group, so a check can neither hang on nor leave behind what it forked.
      const grace = setTimeout(() => {
        killGroup();
        child.stdout.destroy();
        child.stderr.destroy();
      }, 250);
      grace.unref();
      child.once('close', () => clearTimeout(grace));
    });
    child.once('close', (code: number | null, signal: NodeJS.Signals | null) => {
      const out = { stdout: stdout.text(), stderr: stderr.text() };
      if (stoppedBy === 'abort') finish({ outcome: 'aborted' });
      else if (stoppedBy === 'timeout') finish({ outcome: 'timed_out', ...out });
      else if (code !== null) finish({ outcome: 'exited', exitCode: code, ...out });
      else finish({ outcome: 'killed', signal: signal ?? 'unknown signal', ...out });
    });
  });
}

class CappedBuffer {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private dropped = 0;

  constructor(private readonly cap: number) {}

  push(chunk: Buffer): void {
    const room = this.cap - this.kept;
    if (room > 0) {
      const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
      this.chunks.push(part);
      this.kept += part.length;
    }
    this.dropped += Math.max(0, chunk.length - Math.max(0, room));
  }

  text(): string {
    const body = Buffer.concat(this.chunks).toString('utf8').trim();
    return this.dropped > 0 ? `${body}… (${this.dropped} more bytes)` : body;
  }
}
