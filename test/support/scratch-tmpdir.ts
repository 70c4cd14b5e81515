/**
 * Where the test run's temporary files go: a directory of the run's own on a tmpfs (`/dev/shm`),
 * made the `TMPDIR` of the vitest process, its workers and every process the tests start.
 *
 * Why: the tests write real journals, real SQLite and PostgreSQL stores and real files, each with
 * its fsyncs, and on this VM's disk a durable replace (write, fsync, rename, directory fsync) takes
 * ~1.4 ms against ~0.15 ms on a tmpfs. Nothing the tests check needs a disk under it: a crash they
 * simulate kills a process, not the kernel, so what a fsync is for (surviving a power cut) is
 * never what is tested; that the agent and the stores call fsync at the right points is checked
 * from the system calls themselves (test/durability-syscalls.test.ts), which a tmpfs leaves as they are.
 *
 * Left as it was when the caller set `TMPDIR` itself, or when `/dev/shm` is not a tmpfs with room
 * for the run (a container's 64 MiB one has none: the Debian chroot alone unpacks ~300 MB).
 *
 * One kind of test must stay off it: one whose files must look like a package's code to the agent.
 * The agent takes a deleted file mapped from under /dev/shm for shared memory, never for a stale
 * library, as it should; those tests make their files in `diskTmpdir()`.
 */
import { chmodSync, mkdirSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { processRunning } from './process-running.js';

const SHM = '/dev/shm';
const PREFIX = 'fleetpatch-tests-';
/** statfs(2)'s f_type of a tmpfs. */
const TMPFS_MAGIC = 0x01021994;
const ROOM_NEEDED = 4 * 1024 ** 3;
const MADE = Symbol.for('fleetpatch.test.scratchTmpdir');
/** Where temporary files went before the switch: passed to the workers with the environment. */
const DISK_TMPDIR = 'FLEETPATCH_TEST_DISK_TMPDIR';

/**
 * Points `TMPDIR` at the run's scratch directory on `/dev/shm` and returns it; returns undefined
 * (and changes nothing) where that is not to be done. Safe to call more than once: vitest may
 * evaluate its config again in the same process.
 */
export function useScratchTmpdir(): string | undefined {
  const state = globalThis as typeof globalThis & { [MADE]?: string };
  if (state[MADE] !== undefined) return state[MADE];
  if (process.env.TMPDIR !== undefined || !roomyTmpfs(SHM)) return undefined;
  removeLeftovers();
  process.env[DISK_TMPDIR] = tmpdir();
  const dir = join(SHM, `${PREFIX}${process.pid}`);
  mkdirSync(dir, { recursive: true });
  // As /tmp is: tests run programs as other accounts (postgres, nobody) that make files here too.
  chmodSync(dir, 0o1777);
  process.env.TMPDIR = dir;
  state[MADE] = dir;
  // A tmpfs is memory: whatever a test left behind goes when the run ends.
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The temporary directory on the machine's own file system, whether or not the run switched TMPDIR. */
export function diskTmpdir(): string {
  return process.env[DISK_TMPDIR] ?? tmpdir();
}

function roomyTmpfs(path: string): boolean {
  try {
    const stats = statfsSync(path);
    return stats.type === TMPFS_MAGIC && stats.bavail * stats.bsize >= ROOM_NEEDED;
  } catch {
    return false;
  }
}

/** The scratch directories of runs that ended without their exit hook (killed): they hold memory. */
function removeLeftovers(): void {
  for (const name of readdirSync(SHM)) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length));
    if (Number.isInteger(pid) && pid > 0 && !processRunning(pid))
      rmSync(join(SHM, name), { recursive: true, force: true });
  }
}
