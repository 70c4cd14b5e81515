// @ts-check
// What both benches (bench.mjs, bench-inventory.mjs) measure with and where they write.
import { accessSync, constants, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

/**
 * A tmpfs when there is one: the benches measure the coordinator, not the disk's fsync latency.
 * @param {string | undefined} chosen the --tmp flag, when given
 */
export function scratchBase(chosen) {
  if (chosen) return chosen;
  try {
    accessSync('/dev/shm', constants.W_OK);
    return '/dev/shm';
  } catch {
    return tmpdir();
  }
}

/**
 * CPU time (user + system) of a process so far, in ms, from /proc (NaN elsewhere).
 * @param {number | undefined} pid
 */
export function cpuMsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ 100)
  } catch {
    return Number.NaN;
  }
}

/** @param {readonly number[]} sorted @param {number} p */
export const percentile = (sorted, p) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
