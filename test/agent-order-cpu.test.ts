/**
 * `scripts/agent-order-cpu.mjs` stays runnable: one real agent through a few file orders against its
 * stand-in coordinator, its CPU per order printed, its journal and root where `--tmp` puts them and
 * gone afterwards. (It asserts nothing about time; the README quotes what it measures.)
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../scripts/agent-order-cpu.mjs', import.meta.url));

let base: string;
beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), 'agent-order-cpu-'));
});
afterAll(async () => rm(base, { recursive: true, force: true }));

function run(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], { timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? Number(err.code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
  });
}

it('runs a real agent through file orders under --tmp, prints its CPU per order and its first order, and leaves nothing there', async () => {
  const { code, output } = await run(['--orders', '20', '--warm-up', '5', '--runs', '2', '--tmp', base]);
  expect(code, output).toBe(0);
  // Where the journal went, and on what, as stat(1) names a tmpfs (any other file system by its own name).
  const statSays = execFileSync('stat', ['-f', '-c', '%T', base], { encoding: 'utf8' }).trim();
  const where = /^the agent's journal and root under (\S+), on (\S+)$/m.exec(output);
  expect(where?.[1], output).toBe(base);
  expect(where?.[2] === 'tmpfs').toBe(statSays === 'tmpfs');
  expect(output).toMatch(
    /^run 1: \d+ µs of agent CPU per order \(\d+ in the kernel; 20 orders after 5\); its first order \d+\.\d ms from sent to result, \d+ µs of CPU$/m,
  );
  expect(output).toMatch(/^run 2: \d+ µs/m);
  expect(output).toMatch(
    /^the first order: median \d+\.\d ms from sent to result \(min \d+\.\d, max \d+\.\d\), \d+ µs/m,
  );
  expect(output).toMatch(/^median \d+ µs per order over 2 runs/m);
  expect(await readdir(base)).toEqual([]);
});

it('--cpu-prof writes a profile of the first order and one of the measured orders', async () => {
  const profiles = join(base, 'profiles');
  const { code, output } = await run(['--orders', '5', '--warm-up', '2', '--runs', '1', '--cpu-prof', profiles]);
  expect(code, output).toBe(0);
  const files = (await readdir(profiles)).sort();
  expect(files).toHaveLength(2);
  expect(files[0]).toMatch(/^agent-\d+-first\.cpuprofile$/);
  expect(files[1]).toMatch(/^agent-\d+\.cpuprofile$/);
  await rm(profiles, { recursive: true });
});
