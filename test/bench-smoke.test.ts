/**
 * The bench stays runnable: `scripts/bench.mjs --agents 50` with real agent processes and a real
 * coordinator runs to the end, checks every file it rolled out and reverted, and writes its figures as
 * JSON with the machine described. Nothing here is about time: the figures are only checked to exist.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const BENCH = fileURLToPath(new URL('../scripts/bench.mjs', import.meta.url));
let results: string;

beforeAll(async () => {
  results = await mkdtemp(join(tmpdir(), 'fleetpatch-bench-smoke-'));
});

afterAll(async () => {
  if (results) await rm(results, { recursive: true, force: true });
});

/** Runs the bench; resolves with its exit code and output, whichever way it ends. */
function runBench(args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = execFile(process.execPath, [BENCH, ...args], { timeout: 240_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, output: `${stdout}${stderr}` }),
    );
    child.stdin?.on('error', () => {});
  });
}

describe('npm run bench', () => {
  it('50 agents: rollout, revert, reconnect storm and status API measured, every file checked, JSON written', async () => {
    const { code, output } = await runBench(['--agents', '50', '--inventory-hosts', '0', '--results', results]);
    expect(code, output).toBe(0);
    expect(output).toContain('all checks passed');
    expect(output).toContain('Ansible head-to-head');
    const files = await readdir(results);
    expect(files).toHaveLength(1);
    const run = JSON.parse(await readFile(join(results, files[0] ?? ''), 'utf8'));
    expect(run.agents).toBe(50);
    expect(run.failures).toEqual([]);
    expect(run.machine).toMatchObject({ cores: expect.any(Number), node: process.version });
    expect(run.machine.loadAverage).toHaveLength(3);
    // Measured apart: the coordinator's CPU per host and the agents' per order.
    expect(run.rollout.coordinatorUsPerHost).toBeGreaterThan(0);
    expect(run.rollout.agentUsPerOrder).toBeGreaterThan(0);
    expect(run.rollout.dispatchToResultMs.n).toBe(50);
    expect(run.revert.wallMs).toBeGreaterThan(0);
    expect(run.memory.perAgentBytes).toEqual(expect.any(Number));
    expect(run.reconnectStorm).toMatchObject({ healthzFailures: 0, backMs: expect.any(Number) });
    expect(Object.keys(run.statusApi)).toEqual(['status', 'summary', 'hostsPage']);
  }, 300_000);
});
