/**
 * The fault suite's skewed clocks (test/support/skewed-clock.ts) on a real libfaketime: a process it
 * is loaded into leaves its shared memory in /dev/shm when SIGKILLed, and the tracker removes that,
 * and only that.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, it } from 'vitest';
import { waitFor } from '../scripts/lib/local-fleet.mjs';
import { DEV_SHM } from './support/dev-shm.js';
import { describeNeeding } from './support/requirements.js';
import { FAKETIME_SHM, skewedClockEnv, skewedClocks, trackFaketimeLeftovers } from './support/skewed-clock.js';

/** The files libfaketime made for `pid` that are there now: a segment and a semaphore. */
const filesOf = (pid: number) =>
  readdirSync(DEV_SHM)
    .filter((name) => FAKETIME_SHM.exec(name)?.[1] === String(pid))
    .map((name) => join(DEV_SHM, name));

/** A node process under a clock four minutes ahead, once libfaketime has made its files. */
async function skewedProcess(): Promise<ChildProcess & { pid: number }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
    env: { ...process.env, ...skewedClockEnv('+4m') },
    stdio: 'ignore',
  });
  const { pid } = child;
  if (pid === undefined) throw new Error('the skewed process did not start');
  await waitFor('libfaketime to make its shared memory', () => filesOf(pid).length === 2, {
    timeoutMs: 10_000,
  });
  return Object.assign(child, { pid });
}

describeNeeding([skewedClocks], 'libfaketime leftovers', () => {
  it('removes what SIGKILLed skewed processes left, and neither a live one’s nor files there before', async () => {
    // A leftover from before the tracker started, of a process long gone: not this run's to remove.
    const gone = spawnSync('true').pid as number;
    const earlier = join(DEV_SHM, `faketime_shm_${gone}`);
    writeFileSync(earlier, '');
    try {
      const removeLeftovers = trackFaketimeLeftovers();
      const killed = await skewedProcess();
      const living = await skewedProcess();
      try {
        killed.kill('SIGKILL');
        await once(killed, 'exit');
        // A SIGKILLed process runs no destructor: its files stay behind.
        expect(filesOf(killed.pid)).toHaveLength(2);

        removeLeftovers();
        expect(filesOf(killed.pid)).toEqual([]);
        expect(filesOf(living.pid)).toHaveLength(2);
        expect(existsSync(earlier)).toBe(true);
      } finally {
        // Killed by a signal it too leaves its files: gone, they are the tracker's to remove.
        living.kill('SIGKILL');
        await once(living, 'exit');
        removeLeftovers();
      }
      expect(filesOf(living.pid)).toEqual([]);
    } finally {
      rmSync(earlier, { force: true });
    }
  });
});
