/**
 * Where the test run's temporary files go: a directory of the run's own on a tmpfs (`/dev/shm`),
 * made the `TMPDIR` of the vitest process and its workers, and so of the processes they start with
 * their environment (a few, such as the chroot's agent or the PostgreSQL cluster, get their own).
 *
 * Why: the tests write real journals, real SQLite and PostgreSQL stores and real files, each with
 * its fsyncs, and on this VM's disk a durable replace (write, fsync, rename, directory fsync) takes
 * ~1.4 ms against ~0.15 ms on a tmpfs. Nothing the tests check needs a disk under it: a crash they
 * simulate kills a process, not the kernel, so what a fsync is for (surviving a power cut) is
 * never what is tested; that the agent and the stores call fsync at the right points is checked
 * from the system calls themselves (test/durability-syscalls.test.ts), which a tmpfs leaves as they are.
 *
 * Left as it was when the caller set `TMPDIR` itself, or when `/dev/shm` is not a tmpfs with room
 * for the run (a container's 64 MiB one has none: the Debian chroot alone unpacks ~300 MB), or is
 * mounted `nodev` or `noexec` (systemd mounts it `nodev`): the chroot's device nodes and the
 * maintainer scripts dpkg runs from the throwaway roots need both.
 *
 * One kind of test must stay off it: one whose files must look like a package's code to the agent.
 * The agent takes a deleted file mapped from under /dev/shm for shared memory, never for a stale
 * library, as it should; those tests make their files in `diskTmpdir()`.
 */
import {
  chmodSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statfsSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEV_SHM, entriesOfDeadProcesses } from './dev-shm.js';
import { processRunning } from './process-running.js';

/** `fleetpatch-tests-<pid>-<random>`: the pid of the vitest process whose directory it is. */
const PREFIX = 'fleetpatch-tests-';
const OURS = /^fleetpatch-tests-(\d+)-/;
/** Names the pid namespace its pid lives in: another container's run sharing /dev/shm is not swept. */
const OWNER_FILE = '.pid-namespace';
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
  if (process.env.TMPDIR !== undefined) return undefined;
  // Before the room check: what killed runs left is what may have taken the room.
  removeLeftovers();
  if (!usableTmpfs(DEV_SHM)) return undefined;
  const dir = mkdtempSync(join(DEV_SHM, `${PREFIX}${process.pid}-`));
  writeFileSync(join(dir, OWNER_FILE), pidNamespace());
  // As /tmp is: tests run programs as other accounts (postgres, nobody) that make files here too.
  chmodSync(dir, 0o1777);
  process.env[DISK_TMPDIR] = tmpdir();
  process.env.TMPDIR = dir;
  state[MADE] = dir;
  // A tmpfs is memory: whatever a test left behind goes when the run ends (or at the next run's start).
  process.once('exit', () => removeScratch(dir));
  return dir;
}

/** The temporary directory the run had before `useScratchTmpdir` (the system's, or the caller's `TMPDIR`). */
export function diskTmpdir(): string {
  return process.env[DISK_TMPDIR] ?? tmpdir();
}

function usableTmpfs(path: string): boolean {
  try {
    const stats = statfsSync(path);
    if (stats.type !== TMPFS_MAGIC || stats.bavail * stats.bsize < ROOM_NEEDED) return false;
  } catch {
    return false;
  }
  const options = mountOptionsOf(path);
  return options !== undefined && !options.includes('nodev') && !options.includes('noexec');
}

/** The mount options of the file system mounted at `path` (proc(5)'s mountinfo), if one is. */
function mountOptionsOf(path: string): string[] | undefined {
  for (const line of mountInfo()) {
    const fields = line.split(' ');
    if (fields[4] === path) return fields[5]?.split(',');
  }
  return undefined;
}

function mountInfo(): string[] {
  try {
    return readFileSync('/proc/self/mountinfo', 'utf8').split('\n');
  } catch {
    return [];
  }
}

function pidNamespace(): string {
  try {
    return readlinkSync('/proc/self/ns/pid');
  } catch {
    return 'unknown';
  }
}

/** The scratch directories of runs of this pid namespace that ended without their exit hook (killed). */
function removeLeftovers(): void {
  for (const name of entriesOfDeadProcesses(OURS)) {
    const dir = join(DEV_SHM, name);
    let owner: string;
    try {
      owner = readFileSync(join(dir, OWNER_FILE), 'utf8');
    } catch {
      continue;
    }
    if (owner === pidNamespace()) removeScratch(dir);
  }
}

/**
 * Removes a scratch directory unless something still holds it: a file system a test mounted there
 * (a killed test's small tmpfs) or a PostgreSQL server still running from it (its own exit hook
 * stops it, then removes its directory). Either way it is left for the next run's sweep; a failure
 * is reported, never thrown (this runs at exit and while the config loads).
 */
function removeScratch(dir: string): void {
  const inside = `${dir}/`;
  const mounted = mountInfo().some((line) => line.split(' ')[4]?.startsWith(inside));
  if (mounted || postmasterRunningUnder(dir)) return;
  try {
    rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  } catch (err) {
    console.warn(`could not remove the test run's scratch directory ${dir}: ${(err as Error).message}`);
  }
}

/** Whether a `postmaster.pid` one or two levels under `dir` names a running process. */
function postmasterRunningUnder(dir: string): boolean {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return false;
  }
  return names.some((name) =>
    [join(dir, name, 'postmaster.pid'), join(dir, name, 'data', 'postmaster.pid')].some((file) => {
      try {
        const pid = Number(readFileSync(file, 'utf8').split('\n')[0]);
        return Number.isInteger(pid) && pid > 0 && processRunning(pid);
      } catch {
        return false;
      }
    }),
  );
}
