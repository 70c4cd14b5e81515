import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DEV_SHM, entriesNamed, entriesOfDeadProcesses } from './dev-shm.js';
import { type Requirement, requirement } from './requirements.js';

/**
 * A process whose clock is off by a fixed offset while the machine's is not: libfaketime (Debian's
 * `faketime` package) preloaded into that one process shifts what it reads of the wall clock —
 * Node's `Date.now()` included — and nothing else. No hook in the product: the agent, the
 * coordinator and the CLI run unchanged, they only read a skewed clock.
 */

/** Where Debian's libfaketime puts its preload library (one directory per multiarch triplet). */
function libfaketime(): string | undefined {
  const lib = '/usr/lib';
  let triplets: string[];
  try {
    triplets = readdirSync(lib).filter((name) => name.endsWith('-linux-gnu'));
  } catch {
    return undefined;
  }
  return triplets.map((t) => join(lib, t, 'faketime', 'libfaketime.so.1')).find((file) => existsSync(file));
}

const LIBRARY = libfaketime();

export const skewedClocks: Requirement = requirement(
  'libfaketime',
  LIBRARY === undefined
    ? { available: false, reason: 'libfaketime is not installed (apt-get install faketime)' }
    : { available: true },
);

/**
 * The environment that runs a process `offset` off the real clock: `+4m`, `-10m`, `+20m` (libfaketime's
 * relative form: the clock still runs, from the shifted start).
 */
export function skewedClockEnv(offset: string): Record<string, string> {
  if (LIBRARY === undefined) throw new Error('libfaketime is not installed (apt-get install faketime)');
  if (!/^[+-]\d+[smhd]?$/.test(offset)) throw new Error(`not a relative clock offset: ${offset}`);
  return { LD_PRELOAD: LIBRARY, FAKETIME: offset };
}

/** A `wrap` prefix that runs a command under `skewedClockEnv(offset)` (for the coordinator's harness). */
export function skewedClockWrap(offset: string): string[] {
  return ['env', ...Object.entries(skewedClockEnv(offset)).map(([key, value]) => `${key}=${value}`)];
}

/** libfaketime's per-process shared memory in /dev/shm: `faketime_shm_<pid>`, `sem.faketime_sem_<pid>`. */
export const FAKETIME_SHM = /^(?:faketime_shm_|sem\.faketime_sem_)(\d+)$/;

/**
 * libfaketime makes a shared memory segment and a semaphore in /dev/shm for each process it is
 * loaded into, named by its pid, and removes them when that process exits — not when it is
 * SIGKILLed, as the fault suite's agents and coordinators are. Call this before starting skewed
 * processes; the function it returns removes what they left: the files made since (a name seen
 * before counts as new if it is another file now: its pid was reused), of processes no longer
 * running. It also runs when the process exits, for a run whose own teardown failed before it.
 */
export function trackFaketimeLeftovers(shm: string = DEV_SHM): () => void {
  const before = new Map(entriesNamed(FAKETIME_SHM, shm).map((name) => [name, inodeOf(join(shm, name))]));
  const remove = () => {
    for (const name of entriesOfDeadProcesses(FAKETIME_SHM, shm)) {
      const file = join(shm, name);
      if (before.get(name) !== inodeOf(file)) rmSync(file, { force: true });
    }
  };
  process.once('exit', remove);
  return remove;
}

function inodeOf(file: string): number | undefined {
  try {
    return statSync(file).ino;
  } catch {
    return undefined;
  }
}
