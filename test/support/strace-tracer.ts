/**
 * Runs a process under `strace -f` for the durability tests and reads the log back (strace-log.ts).
 *
 * `-D` makes strace the tracee's grandchild, so the process spawned is the traced program itself:
 * its pid, its signals (a graceful SIGTERM, its own SIGKILL at a crash point) and its exit are its
 * own. `--seccomp-bpf` stops it only at the traced calls, which keeps a Node process quick enough.
 */
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { MAX_FRAME_BYTES } from '@fleetpatch/shared';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import { parseStraceLog, READS, type StraceEvent, TRACED_SYSCALLS } from './strace-log.js';

const STRACE = 'strace';
/**
 * The most bytes logged of one buffer: a whole WebSocket frame, header (at most 14 bytes) included.
 * A protocol 3 agent's `inventory.full` parts run to hundreds of KiB (a real host's dpkg database).
 */
const STRING_LIMIT = MAX_FRAME_BYTES + 14;

/** Why not, when not: printed so a skipped test says what it did not prove. */
export type StraceSupport = { available: true } | { available: false; reason: string };

/** Whether strace is installed and may trace here (ptrace can be forbidden in containers). */
export function straceSupport(): StraceSupport {
  const probe = spawnSync(STRACE, [...straceOptions('/dev/null'), process.execPath, '-e', '0'], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  if (probe.error) {
    const missing = (probe.error as NodeJS.ErrnoException).code === 'ENOENT';
    return { available: false, reason: missing ? 'strace is not installed' : `strace failed: ${probe.error.message}` };
  }
  if (probe.status !== 0) {
    return { available: false, reason: `strace cannot trace here: ${probe.stderr.trim().split('\n')[0] ?? ''}` };
  }
  return { available: true };
}

/**
 * `-yy`: every fd with its path or TCP endpoints; `-xx`: bytes in hex, trivially parsed; `-s`
 * (STRING_LIMIT): whole socket buffers up to a whole frame, and WAL pages, so messages and commits
 * can be read (a cut buffer is reported, never guessed at); `-tt` only helps a human reading the log. Signals stay in the log (they are
 * skipped when read): without them strace would not log a SIGKILL'd process's end. Reads are most of
 * a log (Node reading its own modules), so a process whose received messages no rule looks at (the
 * agent: its rules read only what it writes and sends) is traced without them.
 */
function straceOptions(logFile: string, reads = true): string[] {
  const traced = TRACED_SYSCALLS.filter((syscall) => reads || !READS.has(syscall));
  return [
    '-D',
    '-f',
    '-q',
    '-tt',
    '-yy',
    '-xx',
    '-s',
    String(STRING_LIMIT),
    '--seccomp-bpf',
    '-e',
    `trace=${traced.join(',')}`,
    '-o',
    logFile,
    '--',
  ];
}

/** A command prefix (`wrap`) that runs a program under strace, logging to `logFile`. */
export function straceWrap(logFile: string, { reads = true }: { reads?: boolean } = {}): string[] {
  return [STRACE, ...straceOptions(logFile, reads)];
}

/**
 * The events of a traced process that has exited: waits until strace has logged the end of `pid`
 * (strace outlives its tracee by a moment) so no call of it is missing.
 */
export async function readTrace(logFile: string, pid: number): Promise<StraceEvent[]> {
  const end = new RegExp(`^${pid}\\s+(?:\\S+\\s+)?\\+\\+\\+ (?:exited with|killed by)`, 'm');
  const text = await waitFor(
    `strace to log the end of process ${pid} in ${logFile}`,
    async () => {
      // -xx leaves the log plain ASCII: latin1 reads it as well as utf8, and much faster.
      const log = await readFile(logFile, 'latin1');
      return end.test(log) ? log : undefined;
    },
    { timeoutMs: 15_000 },
  );
  return parseStraceLog(text);
}
