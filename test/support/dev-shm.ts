import { readdirSync } from 'node:fs';
import { processRunning } from './process-running.js';

/** The machine's shared-memory tmpfs, where the test run keeps its files and libfaketime its segments. */
export const DEV_SHM = '/dev/shm';

/** The entries of `dir` whose name `pattern` matches; empty where `dir` cannot be read. */
export function entriesNamed(pattern: RegExp, dir: string = DEV_SHM): string[] {
  try {
    return readdirSync(dir).filter((name) => pattern.test(name));
  } catch {
    return [];
  }
}

/**
 * The entries of `dir` whose name `pattern` matches with a pid as its first group, of processes no
 * longer running: what a killed process left behind.
 */
export function entriesOfDeadProcesses(pattern: RegExp, dir: string = DEV_SHM): string[] {
  return entriesNamed(pattern, dir).filter((name) => {
    const pid = Number(pattern.exec(name)?.[1]);
    return Number.isInteger(pid) && pid > 0 && !processRunning(pid);
  });
}
