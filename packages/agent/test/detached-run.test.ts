/**
 * Commands that must outlive the agent run detached, their output and exit status in files: what
 * comes back is the same as from the ordinary runner, their data never reaches a shell, a timeout
 * stops their whole group, and a run left by a previous agent is read back from its directory.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runDetached, settleRun } from '../src/process/detached-run.js';

let work: string;
beforeEach(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-detached-'));
});
afterEach(async () => {
  await rm(work, { recursive: true, force: true });
});

describe('runDetached', () => {
  it('returns the exit status and both outputs, and keeps them in the run directory', async () => {
    const dir = join(work, 'run');
    const result = await runDetached(['sh', '-c', 'echo out; echo err >&2; exit 3'], dir, { timeoutMs: 10_000 });
    expect(result).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n', timedOut: false });
    expect((await readFile(join(dir, 'status'), 'utf8')).trim()).toBe('3');
    // Read back later (a restarted agent), the same run says the same.
    expect(await settleRun(dir, 1000)).toMatchObject({ exitCode: 3, stdout: 'out\n', stderr: 'err\n' });
  });

  it('hands arguments to the program as they are: no shell sees them', async () => {
    const marker = join(work, 'pwned');
    const hostile = `x; touch ${marker}; $(touch ${marker}) \`touch ${marker}\``;
    const result = await runDetached(['printf', '%s', hostile], join(work, 'run'), { timeoutMs: 10_000 });
    expect(result).toMatchObject({ exitCode: 0, stdout: hostile });
    expect(existsSync(marker)).toBe(false);
  });

  it('stops the whole group at the timeout, and says so', async () => {
    const dir = join(work, 'run');
    const started = Date.now();
    const result = await runDetached(['sh', '-c', 'sleep 30 & sleep 30; wait'], dir, { timeoutMs: 300 });
    expect(result.timedOut).toBe(true);
    expect(result.exitCode).not.toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('settleRun says there was no run in a directory where none started', async () => {
    expect(await settleRun(join(work, 'never'), 1000)).toBeUndefined();
  });
});
