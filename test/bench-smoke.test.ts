/**
 * The bench stays runnable: `scripts/bench.mjs --agents 50` with real agent processes and a real
 * coordinator runs to the end, checks every file it rolled out and reverted, and writes its figures as
 * JSON with the machine described; on PostgreSQL, three coordinators share the fleet and the one driving
 * the rollout is killed mid-way. Nothing here is about time: the figures are only checked to exist.
 */
import { execFile, execFileSync } from 'node:child_process';
import { chmod, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { postgresCluster } from './support/postgres-cluster.js';
import { itNeeding } from './support/requirements.js';

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
  it('50 agents: rollout, revert, a second round, reconnect storm and status API measured, every file checked, JSON written', async () => {
    // Ansible's half is left out here: ansible-head-to-head.test.ts runs it on its own, smaller.
    const { code, output } = await runBench([
      ...['--agents', '50', '--inventory-hosts', '0', '--results', results, '--skip-ansible', '--rounds', '2'],
      ...['--idle-seconds', '1', '--watchers', '1'],
    ]);
    expect(code, output).toBe(0);
    expect(output).toContain('all checks passed');
    expect(output).toContain('Ansible head-to-head: skipped (--skip-ansible)');
    const files = await readdir(results);
    expect(files).toHaveLength(1);
    const run = JSON.parse(await readFile(join(results, files[0] ?? ''), 'utf8'));
    expect(run.agents).toBe(50);
    expect(run.failures).toEqual([]);
    expect(run.machine).toMatchObject({ cores: expect.any(Number), node: process.version });
    expect(run.machine.loadAverage).toHaveLength(3);
    // Where its durable writes went, named as stat(1) names it (the scratch is gone; its parent is on the same file system).
    const scratch = /^scratch (\S+) on (\S+):/m.exec(output);
    expect(scratch, output).not.toBeNull();
    expect(run.scratchFileSystem).toBe(scratch?.[2]);
    const statSays = execFileSync('stat', ['-f', '-c', '%T', dirname(scratch?.[1] ?? '/')], {
      encoding: 'utf8',
    }).trim();
    expect(run.scratchFileSystem === 'tmpfs').toBe(statSays === 'tmpfs');
    // Measured apart: the coordinator's CPU per host and the agents' per order.
    expect(run.rollout.coordinatorUsPerHost).toBeGreaterThan(0);
    expect(run.rollout.agentUsPerOrder).toBeGreaterThan(0);
    expect(run.rollout.dispatchToResultMs.n).toBe(50);
    // A first start commits an enrollment and a hello, shared with others of the moment: some, never more than 2 each.
    expect(run.connect.transactionsPerAgent).toBeGreaterThan(0);
    expect(run.connect.transactionsPerAgent).toBeLessThanOrEqual(2);
    expect(output).toMatch(/connect 50 agents .*; [\d.]+ store transactions per agent;/);
    // The yardstick beside it: a bare ws server's CPU for the same exchange.
    expect(run.wireFloor.serverCpuUsPerHost).toBeGreaterThan(0);
    // And beside the storm's and the reset's: the same server letting each agent in, its proof checked.
    expect(run.handshakeFloor.serverCpuUsPerConnection).toBeGreaterThan(0);
    expect(run.handshakeFloor.clientCpuUsPerConnection).toBeGreaterThan(0);
    expect(output).toMatch(
      /handshake floor: a bare ws server lets 50 clients in .*: \d+ µs of server CPU per connection/,
    );
    // And beside the agents' CPU per order: the file system calls one file order requires, bare, plus
    // the wire floor's clients' side (each of its reads checked, so a floor that wrote nothing would fail).
    expect(run.agentFloor.durability).toMatchObject({ orders: 2000, cpuUsPerOrder: expect.any(Number) });
    expect(run.agentFloor.durability.systemUsPerOrder).toBeGreaterThan(0);
    expect(run.agentFloor.wireClientUsPerOrder).toBeGreaterThan(0);
    expect(run.agentFloor.usPerOrder).toBeCloseTo(
      run.agentFloor.durability.cpuUsPerOrder + run.agentFloor.wireClientUsPerOrder,
    );
    expect(output).toMatch(/agent floor: \d+ µs per order/);
    // The connected fleet left idle, its CPU measured: the part of each phase's CPU that is not the phase's.
    expect(run.idle.wallMs).toBeGreaterThanOrEqual(1000);
    expect(run.idle).toMatchObject({
      coordinatorUsPerAgentSecond: expect.any(Number),
      agentsUsPerAgentSecond: expect.any(Number),
    });
    expect(output).toMatch(/of it the fleet's idle cost over the same [\d.]+ s: coordinator \d+ µs\/host/);
    // --watchers 1: a real `rollout status --watch` followed the rollout to its end (it exited 0: no failure above).
    expect(run.watchers).toMatchObject({ count: 1 });
    expect(run.watchers.lines[0]).toBeGreaterThan(1);
    expect(run.watchers.cpuMs[0]).toBeGreaterThan(0);
    expect(output).toMatch(/watchers: 1 `rollout status --watch` processes followed the rollout: \d+ lines/);
    expect(run.revert.wallMs).toBeGreaterThan(0);
    // --rounds 2: the same patch rolled out and back once more, on the coordinator and agents already warm.
    expect(run.laterRounds).toHaveLength(1);
    expect(run.laterRounds[0]).toMatchObject({
      round: 2,
      rollout: { wallMs: expect.any(Number), coordinatorUsPerHost: expect.any(Number) },
      revert: { wallMs: expect.any(Number), agentUsPerOrder: expect.any(Number) },
    });
    expect(run.laterRounds[0].rollout.agentUsPerOrder).toBeGreaterThan(0);
    expect(output).toMatch(/round 2 \(the same patch, a new rollout\): rollout [\d.]+ s/);
    expect(run.memory.perAgentBytes).toEqual(expect.any(Number));
    expect(run.reconnectStorm).toMatchObject({ healthzFailures: 0, backMs: expect.any(Number) });
    // Its shape on the way: half back, then nine tenths, then all.
    expect(run.reconnectStorm.halfBackMs).toBeGreaterThan(0);
    expect(run.reconnectStorm.halfBackMs).toBeLessThanOrEqual(run.reconnectStorm.ninetyPercentBackMs);
    expect(run.reconnectStorm.ninetyPercentBackMs).toBeLessThanOrEqual(run.reconnectStorm.backMs);
    expect(output).toMatch(
      /all back online [\d.]+ s after restarting \(agent start included; half back in [\d.]+ s, 90 % in [\d.]+ s\)/,
    );
    // The network reset cuts connections with `ss -K`, which needs root: without it the run says why it skipped.
    if (process.getuid?.() === 0)
      expect(run.networkReset).toMatchObject({ healthzFailures: 0, backMs: expect.any(Number) });
    else expect(run.networkReset.skipped).toMatch(/ss -K failed/);
    expect(Object.keys(run.statusApi)).toEqual(['status', 'summary', 'hostsPage']);
  }, 300_000);

  itNeeding(
    postgresCluster,
    'PostgreSQL, 3 coordinators, 30 agents: agents spread over the group, the driving coordinator killed mid-rollout and taken over, every file checked; the cluster under --store-tmp',
    async () => {
      // A directory the postgres user may pass through, as /var/tmp is; the cluster's own is inside it.
      const storeTmp = await mkdtemp(join(tmpdir(), 'fleetpatch-bench-store-tmp-'));
      onTestFinished(() => rm(storeTmp, { recursive: true, force: true }));
      await chmod(storeTmp, 0o755);
      const { code, output } = await runBench([
        ...['--agents', '30', '--inventory-hosts', '0', '--results', results],
        ...['--store', 'postgres', '--coordinators', '3', '--lease-ms', '2000', '--kill-driver', '--skip-ansible'],
        ...['--idle-seconds', '0', '--store-tmp', storeTmp],
      ]);
      expect(code, output).toBe(0);
      expect(output).toContain('all checks passed');
      const cluster = /^PostgreSQL 15 cluster on \S+ \(fsync on\) in (\S+),/m.exec(output);
      expect(dirname(dirname(cluster?.[1] ?? '')), output).toBe(storeTmp);
      expect(await readdir(storeTmp)).toEqual([]);
      const file = (await readdir(results)).find((name) => name.startsWith('bench-30-postgres-3-'));
      const run = JSON.parse(await readFile(join(results, file ?? ''), 'utf8'));
      expect(run).toMatchObject({ agents: 30, store: 'postgres', coordinators: 3, failures: [] });
      // Agent i lists coordinator i mod 3 first: ten each.
      expect(run.agentsPerCoordinator).toEqual([
        { id: 'c1', agents: 10 },
        { id: 'c2', agents: 10 },
        { id: 'c3', agents: 10 },
      ]);
      expect(run.takeover.takenBy).not.toBe(run.takeover.killed);
      expect(run.takeover.tokens[1]).toBeGreaterThan(run.takeover.tokens[0]);
      expect(run.takeover.takeoverMs).toBeGreaterThan(0);
      expect(run.takeover.finishedAfterKillMs).toBeGreaterThan(0);
      expect(run.rollout.dispatchToResultMs.n).toBe(30);
      expect(run.reconnectStorm.healthzFailures).toBe(0);
    },
    300_000,
  );

  it('refuses --rounds 0, and changes nothing', async () => {
    const { code, output } = await runBench(['--agents', '5', '--rounds', '0', '--results', results]);
    expect(code).toBe(2);
    expect(output).toContain('[--rounds R]');
    expect((await readdir(results)).filter((name) => name.startsWith('bench-5-'))).toEqual([]);
  });

  it.each([
    [['--idle-seconds=-1'], 'a negative --idle-seconds'],
    [['--idle-seconds', 'soon'], 'an --idle-seconds that is no number'],
    [['--idle-seconds', '-1'], 'a flag parseArgs cannot read (its value looks like a flag)'],
  ])('refuses %j (%s), and changes nothing', async (flags) => {
    const { code, output } = await runBench(['--agents', '5', ...flags, '--results', results]);
    expect(code, output).toBe(2);
    expect(output).toContain('[--idle-seconds S]');
    expect((await readdir(results)).filter((name) => name.startsWith('bench-5-'))).toEqual([]);
  });

  it("--store-tmp puts the coordinator's store apart from the agents' scratch, and removes it at the end", async () => {
    const storeTmp = await mkdtemp(join(tmpdir(), 'fleetpatch-bench-store-tmp-'));
    try {
      const { code, output } = await runBench([
        ...['--agents', '5', '--inventory-hosts', '0', '--skip-ansible', '--idle-seconds', '0'],
        ...['--store-tmp', storeTmp, '--results', results],
      ]);
      expect(code, output).toBe(0);
      expect(output).toContain('all checks passed');
      const store = /^the coordinators' store in (\S+) on (\S+) \(--store-tmp\)$/m.exec(output);
      expect(store, output).not.toBeNull();
      expect(dirname(store?.[1] ?? '')).toBe(storeTmp);
      // The agents' scratch no longer claims the store.
      expect(output).toMatch(/^scratch \S+ on \S+: the agents' journals and roots( \(|$)/m);
      const file = (await readdir(results)).find((name) => name.startsWith('bench-5-sqlite-'));
      const run = JSON.parse(await readFile(join(results, file ?? ''), 'utf8'));
      const statSays = execFileSync('stat', ['-f', '-c', '%T', storeTmp], { encoding: 'utf8' }).trim();
      expect(run.storeFileSystem === 'tmpfs').toBe(statSays === 'tmpfs');
      // Its own scratch, database and all, is gone with the run's.
      expect(await readdir(storeTmp)).toEqual([]);
    } finally {
      await rm(storeTmp, { recursive: true, force: true });
      for (const name of (await readdir(results)).filter((n) => n.startsWith('bench-5-')))
        await rm(join(results, name), { force: true });
    }
  }, 300_000);

  it('--cpu-prof writes a profile of the coordinator and of each agent process for every phase, later rounds too', async () => {
    const work = await mkdtemp(join(tmpdir(), 'fleetpatch-bench-cpu-prof-'));
    onTestFinished(() => rm(work, { recursive: true, force: true }));
    const profiles = join(work, 'profiles');
    const { code, output } = await runBench([
      ...['--agents', '5', '--inventory-hosts', '0', '--skip-ansible', '--idle-seconds', '0', '--rounds', '2'],
      ...['--agent-processes', '2', '--cpu-prof', profiles, '--results', join(work, 'results')],
    ]);
    expect(code, output).toBe(0);
    expect(output).toContain('all checks passed');
    const files = (await readdir(profiles)).filter((name) => name.endsWith('.cpuprofile'));
    const phases = ['connect', 'rollout', 'revert', 'rollout-2', 'revert-2', 'status', 'storm', 'reset'];
    for (const phase of phases) {
      const of = files.filter((name) => name.endsWith(`-${phase}.cpuprofile`));
      // The coordinator's and the two agent processes' (the storm's and the reset's are the restarted ones).
      expect(
        of.filter((name) => name.startsWith('coordinator-c1-')),
        phase,
      ).toHaveLength(1);
      expect(
        of.filter((name) => name.startsWith('agents-')),
        phase,
      ).toHaveLength(2);
      for (const name of of) {
        const profile = JSON.parse(await readFile(join(profiles, name), 'utf8'));
        expect(profile.nodes.length, name).toBeGreaterThan(0);
        expect(profile.endTime, name).toBeGreaterThan(profile.startTime);
      }
    }
  }, 300_000);

  it('refuses a --store-tmp that is not a directory, and changes nothing', async () => {
    const { code, output } = await runBench([
      ...['--agents', '5', '--store-tmp', join(results, 'no-such-dir'), '--results', results],
    ]);
    expect(code).toBe(2);
    expect(output).toContain(`--store-tmp ${join(results, 'no-such-dir')} is not a directory`);
    expect((await readdir(results)).filter((name) => name.startsWith('bench-5-'))).toEqual([]);
  });

  it('refuses watchers beside a killed coordinator, and changes nothing', async () => {
    const { code, output } = await runBench([
      ...['--agents', '5', '--store', 'postgres', '--coordinators', '2', '--kill-driver', '--watchers', '1'],
      ...['--results', results],
    ]);
    expect(code).toBe(2);
    expect(output).toContain('--watchers and --kill-driver do not go together');
    expect((await readdir(results)).filter((name) => name.startsWith('bench-5-'))).toEqual([]);
  });

  it('refuses a group of coordinators on SQLite, and changes nothing', async () => {
    const { code, output } = await runBench(['--agents', '5', '--coordinators', '2', '--results', results]);
    expect(code).toBe(2);
    expect(output).toContain('--coordinators above 1, --lease-ms and --kill-driver need --store postgres');
    expect((await readdir(results)).filter((name) => name.startsWith('bench-5-'))).toEqual([]);
  });
});
