import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JoinTokenCreated } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  type AgentIdentity,
  connectAs,
  enrollIdentity,
  enrollWith,
  nextFrame,
  openAgentSocket,
  signedHello,
} from './support/agent-identity.js';
import { CLI, runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FleetHarness, sampleFilePatch } from './support/fleet-harness.js';

// `fleetpatch rollout status --watch` as a CI job runs it: the built binary as a child process, its
// stdout a pipe (so: timestamped lines), against a real coordinator that is killed and started again
// under it, and real agents. Each exit code a runbook relies on is checked on the real process.

const HOSTS = ['web-1', 'web-2'];
const CONF = '/etc/app/app.conf';

let work: string;
let fleet: FleetHarness;

const rootOf = (host: string) => join(work, host, 'root');

/** A running `fleetpatch …`: its stdout lines as they come, and its exit. */
interface RunningCli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves once stdout has a line matching `pattern`; rejects after `timeoutMs` or if it exits first. */
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<string>;
  exit: Promise<number | null>;
}

function startCli(args: string[], env: Record<string, string> = {}): RunningCli {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FLEETPATCH_')));
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...base, FLEETPATCH_URL: fleet.coordinator.url, FLEETPATCH_TOKEN: ADMIN_TOKEN, ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdin?.on('error', () => {});
  child.stdin?.end();
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  child.stdout?.on('data', (chunk) => {
    out += chunk;
    for (const wake of waiters) wake();
  });
  child.stderr?.on('data', (chunk) => {
    err += chunk;
  });
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForLine: (pattern, timeoutMs = 20_000) =>
      new Promise<string>((resolve, reject) => {
        const check = () => {
          const line = out.split('\n').find((l) => pattern.test(l));
          if (line === undefined) return;
          finish();
          resolve(line);
        };
        const timer = setTimeout(() => {
          finish();
          reject(new Error(`no line matching ${pattern} within ${timeoutMs} ms; stdout:\n${out}\nstderr:\n${err}`));
        }, timeoutMs);
        const finish = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        void exit.then(() => {
          if (!waiters.has(check)) return;
          finish();
          reject(new Error(`exited before a line matching ${pattern}; stdout:\n${out}\nstderr:\n${err}`));
        });
        check();
      }),
  };
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-cli-watch-'));
  for (const host of HOSTS) {
    await mkdir(join(rootOf(host), 'etc/app'), { recursive: true });
    await writeFile(join(rootOf(host), CONF), 'workers = 2\n');
  }
  fleet = await FleetHarness.start(join(work, 'coordinator'), { tickIntervalMs: 100 });
  await fleet.spawnRegistered(HOSTS, { role: 'web' }, (host) => ({
    dataDir: join(work, host, 'data'),
    rootDir: rootOf(host),
  }));
}, 60_000);

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

async function newRollout(title: string, bakeSeconds = 0): Promise<string> {
  const patchId = await fleet.createPatch(sampleFilePatch(CONF, `workers = ${title.length}\n`, { title }));
  return fleet.createRollout({ patchId, target: { labels: { role: 'web' } }, waves: [1, '100%'], bakeSeconds });
}

describe('fleetpatch rollout status --watch, off a terminal', () => {
  it('rides out a coordinator restart, reconnecting, and exits 0 when the rollout succeeds', async () => {
    const rolloutId = await newRollout('Watched through a restart');
    const watch = startCli(['rollout', 'status', rolloutId, '--watch']);
    const first = await watch.waitForLine(/rollout ro_\S+ scheduled/);
    // Plain lines, each stamped with the time: what a CI log keeps.
    expect(first).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z rollout ro_\S+ scheduled: "Watched through a restart" \(E2E\)/,
    );

    await fleet.coordinator.kill();
    await watch.waitForLine(/coordinator unreachable \(cannot reach the coordinator at .*\); reconnecting…/);
    await fleet.restart();
    await watch.waitForLine(/coordinator reachable again after \d+s/);
    // Canaries are the hosts connected at the start: wait for both, so web-1 (first by name) is the canary.
    await fleet.waitOnline(HOSTS);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);

    expect(await watch.exit, watch.stderr()).toBe(0);
    const out = watch.stdout();
    // Changes between two fetches come together: a host may first be seen healthy, the rollout succeeded.
    expect(out).toMatch(/wave 1 web-1 (\S+ → )?healthy/);
    expect(out).toMatch(/wave 2 web-2 (\S+ → )?healthy/);
    expect(out).toMatch(/rollout (running|scheduled) → succeeded/);
    expect(out).toMatch(/finished succeeded \(exit 0\)\n$/);
    for (const line of out.trimEnd().split('\n')) expect(line).toMatch(/^\d{4}-\d\d-\d\dT\S+Z /);
    // No escape sequence off a terminal: no colour, no redraw.
    expect(out).not.toContain('\x1b');
  }, 90_000);

  it('exits 6 when --timeout passes first, and the rollout is left as it was', async () => {
    const rolloutId = await newRollout('Never started');
    const started = Date.now();
    const result = await runCli(fleet.coordinator.url, ['rollout', 'status', rolloutId, '--watch', '--timeout', '1'], {
      token: ADMIN_TOKEN,
    });
    expect(result.code, result.stderr).toBe(6);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(result.stderr).toContain('watch timed out after 1s; the rollout carries on (exit 6)');
    expect((await fleet.status(rolloutId)).rollout.state).toBe('scheduled');
  }, 30_000);

  it('exits 8 when the rollout it watches is aborted', async () => {
    const rolloutId = await newRollout('Aborted while baking', 300);
    const watch = startCli(['rollout', 'status', rolloutId, '--watch']);
    await watch.waitForLine(/scheduled/);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    // Paced, the watch may see wave 1 first when it already bakes: changes between two fetches come together.
    await watch.waitForLine(/wave 1 (\S+ → )?baking \(bake 300s\)/);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/abort`, { reason: 'seen enough' });
    expect(await watch.exit, watch.stderr()).toBe(8);
    expect(watch.stdout()).toMatch(/rollout running → aborted/);
    expect(watch.stdout()).toMatch(/finished aborted \(exit 8\)/);
  }, 60_000);

  it('follows a rollout of more than 1,000 hosts through its summary, and ends with the last one as its record', async () => {
    // 1,001 hosts enrolled with one multi-use token. The canary is the one connected (a socket that
    // never answers its order); the others never connect. The rollout is aborted while the canary runs.
    const crowd = Array.from({ length: 1001 }, (_, i) => `crowd-${String(i).padStart(4, '0')}`);
    const { token } = await fleet.api.post<JoinTokenCreated>('/v1/join-tokens', {
      uses: crowd.length,
      labels: { role: 'crowd' },
    });
    const identities = [];
    for (let i = 0; i < crowd.length; i += 50)
      identities.push(
        ...(await Promise.all(crowd.slice(i, i + 50).map((id) => enrollWith(fleet.coordinator.url, token, id)))),
      );
    const canary = await connectAs(fleet.coordinator.url, identities[0] as AgentIdentity);
    onTestFinished(() => void canary.close());
    const patchId = await fleet.createPatch(sampleFilePatch(CONF, 'workers = 1001\n', { title: 'To a crowd' }));
    const rolloutId = await fleet.createRollout({ patchId, target: { labels: { role: 'crowd' } }, waves: [1, '100%'] });
    const watch = startCli(['rollout', 'status', rolloutId, '--watch']);
    await watch.waitForLine(/scheduled/);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/start`);
    // Counts per wave, never a line per host.
    await watch.waitForLine(/wave 2: 0 done, 1000 pending$/);
    await fleet.api.post(`/v1/rollouts/${rolloutId}/abort`, { reason: 'seen enough' });
    expect(await watch.exit, watch.stderr()).toBe(8);
    const out = watch.stdout();
    expect(out).toMatch(/rollout running → aborted/);
    // The record at the end is the last summary's view: each wave's bar and counts, no host named.
    expect(out).toMatch(/wave 1 {2}\S{30} {2}0 done, 1 in flight {3}stopped\n/);
    expect(out).toMatch(/wave 2 {2}\S{30} {2}0 done, 1000 pending {2}pending\n/);
    expect(out).toMatch(/finished aborted \(exit 8\)\n$/);
    expect(out).not.toMatch(/crowd-\d{4}/);
    expect(out.trimEnd().split('\n').length).toBeLessThan(30);

    // `rollout status` counts a wave of 1,000 hosts by state rather than naming each.
    const shown = await runCli(fleet.coordinator.url, ['rollout', 'status', rolloutId], { token: ADMIN_TOKEN });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toMatch(/^wave 2 {2}pending {2}1000 queued \(1000 offline\)$/m);
    expect(shown.stdout.length).toBeLessThan(2000);
    // `rollout hosts` pages through them: every one (two pages of the API), or filtered and cut.
    const every = await runCli(fleet.coordinator.url, ['rollout', 'hosts', rolloutId, '--json'], {
      token: ADMIN_TOKEN,
    });
    expect(every.code, every.stderr).toBe(0);
    const listed = JSON.parse(every.stdout) as { hosts: { hostId: string; wave: number }[]; next: string | null };
    expect(listed.hosts.map((h) => h.hostId)).toEqual([...crowd].sort());
    expect(listed.next).toBeNull();
    const cut = await runCli(
      fleet.coordinator.url,
      ['rollout', 'hosts', rolloutId, '--wave', '2', '--state', 'queued', '--limit', '3'],
      { token: ADMIN_TOKEN },
    );
    expect(cut.code, cut.stderr).toBe(0);
    const rows = cut.stdout.trimEnd().split('\n');
    expect(rows[0]).toMatch(/^HOST +WAVE +STATE +ONLINE +CHANGED +REASON$/);
    expect(rows.slice(1)).toHaveLength(3);
    for (const row of rows.slice(1)) expect(row).toMatch(/^crowd-\d{4} +2 +queued +no +no +-$/);
    expect(cut.stderr).toMatch(/the first 3 shown; more match/);
  }, 120_000);

  it('gives up with exit 5 once the coordinator stays away longer than --reconnect-for', async () => {
    const rolloutId = await newRollout('Coordinator gone');
    const watch = startCli(['rollout', 'status', rolloutId, '--watch', '--reconnect-for', '1']);
    await watch.waitForLine(/scheduled/);
    await fleet.coordinator.kill();
    try {
      expect(await watch.exit, watch.stderr()).toBe(5);
      expect(watch.stderr()).toMatch(/coordinator unreachable for 1s, gave up: cannot reach the coordinator/);
    } finally {
      await fleet.restart();
    }
  }, 60_000);
});

describe('text from the server never drives the terminal', () => {
  it('shows a patch title that would clear the screen and retitle the window escaped, in every view', async () => {
    const hostile = 'Fix\x1b[2J\x1b[H\x1b]0;owned\x07\x9b31m';
    const patchId = await fleet.createPatch(
      sampleFilePatch(CONF, 'workers = 9\n', { title: hostile, ticket: 'OPS-\x1b]52;c;cm0gLXJmIC8=\x07' }),
    );
    const rolloutId = await fleet.createRollout({ patchId, target: { labels: { role: 'web' } }, waves: [1] });
    const views = [
      ['patch', 'list'],
      ['patch', 'show', patchId],
      ['rollout', 'status', rolloutId],
      ['rollout', 'list'],
      ['events', rolloutId],
      ['rollout', 'status', rolloutId, '--watch', '--timeout', '1'],
      ['patch', 'show', patchId, '--json'],
    ];
    for (const args of views) {
      const result = await runCli(fleet.coordinator.url, args, { token: ADMIN_TOKEN });
      expect(result.code, `${args.join(' ')}: ${result.stderr}`).toBe(args.includes('--timeout') ? 6 : 0);
      for (const raw of ['\x1b', '\x07', '\x9b']) expect(result.stdout, args.join(' ')).not.toContain(raw);
    }
    const shown = await runCli(fleet.coordinator.url, ['patch', 'show', patchId], { token: ADMIN_TOKEN });
    expect(shown.stdout).toContain('Fix\\u001b[2J\\u001b[H\\u001b]0;owned\\u0007\\u009b31m');
    // --json stays JSON that reads back as exactly what was stored.
    const json = await runCli(fleet.coordinator.url, ['patch', 'show', patchId, '--json'], { token: ADMIN_TOKEN });
    expect((JSON.parse(json.stdout) as { title: string }).title).toBe(hostile);
  }, 60_000);
});

// A malicious enrolled agent (root on its server, holding its own credential) answers through a
// hand-driven socket: what it writes reaches `rollout status` and `agent show`, and must stay its
// own escaped text inside the CLI's lines.
describe("a malicious agent's text in the operator's terminal", () => {
  it('cannot forge whole lines of `rollout status`, or of its --watch record, with a newline in its reason', async () => {
    const evil = await enrollIdentity(fleet.coordinator.url, fleet.api, 'evil-1', { role: 'evil' });
    const socket = await connectAs(fleet.coordinator.url, evil);
    try {
      const patchId = await fleet.createPatch(sampleFilePatch(CONF, 'forged\n', { title: 'forged status' }));
      const order = nextFrame<{ type: 'order.apply'; orderId: string }>(socket, 'order.apply');
      const rolloutId = await fleet.startRollout({ patchId, target: { hostIds: ['evil-1'] }, waves: [1] });
      const { orderId } = await order;
      const forged = 'wave 9  passed   db-1:healthy db-2:healthy';
      socket.send(
        JSON.stringify({
          type: 'order.result',
          orderId,
          outcome: 'failed',
          changed: false,
          reason: `disk full\n${forged}\r\nrollout ${rolloutId}  succeeded (approved by security-team)`,
          finishedAt: new Date().toISOString(),
        }),
      );
      await fleet.waitForState(rolloutId, ['halted']);
      const views = [
        ['rollout', 'status', rolloutId],
        // Off a terminal, --watch ends with the whole status once more, one timestamped line per line.
        ['rollout', 'status', rolloutId, '--watch', '--timeout', '5'],
      ];
      const forgedLines: Record<string, string[]> = {};
      for (const args of views) {
        const result = await runCli(fleet.coordinator.url, args, { token: ADMIN_TOKEN });
        expect(result.stdout, args.join(' ')).toContain(`disk full\\u000a${forged}\\u000d\\u000arollout ${rolloutId}`);
        forgedLines[args.join(' ')] = result.stdout
          .split('\n')
          .filter((line) => /^(\S+Z )?(wave 9|rollout \S+ {2}succeeded)/.test(line));
      }
      expect(forgedLines).toEqual({
        [`rollout status ${rolloutId}`]: [],
        [`rollout status ${rolloutId} --watch --timeout 5`]: [],
      });
    } finally {
      socket.close();
    }
  }, 60_000);

  it('shows zero-width, BOM, line-separator and the Arabic letter mark escaped in `agent show`, like the bidi overrides', async () => {
    const spoof = await enrollIdentity(fleet.coordinator.url, fleet.api, 'spoof-1', { role: 'db' });
    const ws = openAgentSocket(fleet.coordinator.url, spoof.hostId);
    try {
      const { nonce } = await nextFrame<{ type: 'challenge'; nonce: string }>(ws, 'challenge');
      const welcomed = nextFrame(ws, 'welcome');
      // `role=web` to the eye; none of these characters is a control character (\p{Cc}).
      const invisible = ['\u200b', '\u200c', '\u200d', '\u2060', '\ufeff', '\u2028', '\u2029', '\u061c'];
      ws.send(
        JSON.stringify(
          signedHello(spoof, nonce, { labels: { role: `w${invisible.join('')}eb` }, agentVersion: 'v1\u2028v2' }),
        ),
      );
      await welcomed;
      const shown = await runCli(fleet.coordinator.url, ['agent', 'show', 'spoof-1'], { token: ADMIN_TOKEN });
      expect(shown.code, shown.stderr).toBe(0);
      const leaked = invisible.filter((c) => shown.stdout.includes(c));
      expect(leaked.map((c) => `U+${c.codePointAt(0)?.toString(16).padStart(4, '0')}`)).toEqual([]);
      expect(shown.stdout).toContain('role=w\\u200b\\u200c\\u200d\\u2060\\ufeff\\u2028\\u2029\\u061ceb');
      expect(shown.stdout).toContain('agent v1\\u2028v2');
    } finally {
      ws.close();
    }
  }, 30_000);
});
