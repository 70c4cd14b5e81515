/**
 * Host preconditions end to end: a real coordinator, real agent processes each confined to its own
 * root, the real CLI. A patch requires what its hosts must hold (a module file at exact bytes, an
 * allowed probe; a package at a version, read by dpkg from a throwaway root); the host that holds it
 * changes, the host that does not is shown failing at preflight, refused `precondition_failed` at
 * apply, and left exactly as it was.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { PatchSpecInput, PreflightResult, RolloutStatus } from '@fleetpatch/shared';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createDebTestBed,
  type DebTestBed,
  type DpkgRoot,
  debTools,
} from '../packages/agent/test/support/deb-fixtures.js';
import { samplePackagePatch } from '../scripts/lib/sample-specs.mjs';
import { runCli } from './support/cli-process.js';
import { ADMIN_TOKEN, FINAL_APPLY_STATES, FleetHarness, hostOf, sampleFilePatch } from './support/fleet-harness.js';
import { describeNeeding } from './support/requirements.js';

const CONF = '/etc/app/app.conf';
const MODULE = '/etc/app/module.conf';
const OLD = 'workers = 2\n';
const NEW = 'workers = 8\nmodule_api = 2\n';
const MODULE_V2 = 'module = 2\n';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let work: string;
let fleet: FleetHarness;

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'fleetpatch-preconditions-'));
  fleet = await FleetHarness.start(join(work, 'coordinator'));
});

afterAll(async () => {
  await fleet?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const cli = (...args: string[]) => runCli(fleet.coordinator.url, args, { token: ADMIN_TOKEN });

/** Preflight through the CLI, as an operator runs it: its table, and its exit code (3: a host would fail). */
async function preflightByCli(rolloutId: string): Promise<{ code: number | null; lines: string[] }> {
  const run = await cli('rollout', 'preflight', rolloutId, '--timeout', '20');
  expect(run.stderr).toBe('');
  return { code: run.code, lines: run.stdout.split('\n') };
}

/** Starts the rollout of `patchId` on `hosts` (one wave, one failure allowed) and waits for its end. */
async function rollOut(patchId: string, hosts: string[]): Promise<{ rolloutId: string; done: RolloutStatus }> {
  const rolloutId = await fleet.startRollout({ patchId, target: { hostIds: hosts }, waves: ['100%'], maxFailures: 1 });
  return { rolloutId, done: await fleet.waitForState(rolloutId, FINAL_APPLY_STATES, 60_000) };
}

describe('a file patch that requires a module file and a probe', () => {
  const READY = 'pre-ready';
  const STALE = 'pre-stale';
  const rootOf = (host: string) => join(work, host, 'root');
  let patchId: string;

  beforeAll(async () => {
    for (const [host, module] of [
      [READY, MODULE_V2],
      [STALE, 'module = 1\n'],
    ] as const) {
      await mkdir(join(rootOf(host), 'etc/app'), { recursive: true });
      await chmod(join(rootOf(host), 'etc/app'), 0o755);
      await writeFile(join(rootOf(host), CONF), OLD);
      await writeFile(join(rootOf(host), MODULE), module);
      const configFile = join(work, host, 'agent.json');
      await writeFile(configFile, JSON.stringify({ health: { allowedCommands: [['/bin/true']] } }));
      fleet.spawnAgent({
        id: host,
        joinToken: await fleet.register(host),
        dataDir: join(work, host, 'data'),
        rootDir: rootOf(host),
        configFile,
      });
    }
    await fleet.waitOnline([READY, STALE]);
    const base = sampleFilePatch(CONF, NEW, { ticket: 'E2E-REQUIRES' });
    patchId = await fleet.createPatch({
      ...base,
      change: { ...base.change, requires: [{ file: MODULE, sha256: sha256(MODULE_V2) }, { command: ['/bin/true'] }] },
    } as PatchSpecInput);
  });

  it('patch show lists what the patch requires', async () => {
    const shown = await cli('patch', 'show', patchId);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`  Requires       file ${MODULE} sha256 ${sha256(MODULE_V2).slice(0, 12)}…\n`);
    expect(shown.stdout).toContain('  Requires       command /bin/true\n');
  });

  it('preflight shows the host that fails them and why; the rollout refuses it precondition_failed and leaves its file', async () => {
    const rolloutId = await fleet.createRollout({ patchId, target: { hostIds: [READY, STALE] }, waves: ['100%'] });
    const preflight = await preflightByCli(rolloutId);
    expect(preflight.code).toBe(3);
    const stale = sha256('module = 1\n').slice(0, 12);
    expect(preflight.lines.find((l) => l.startsWith(STALE))).toMatch(
      new RegExp(`^${STALE} +would_fail +precondition_failed: host preconditions not met \\(1 of 2, below\\)$`),
    );
    expect(preflight.lines.find((l) => l.startsWith(READY))).toMatch(new RegExp(`^${READY} +would_apply `));
    // Below the table, each one that does not hold, per host, with what the host showed.
    expect(preflight.lines.slice(preflight.lines.indexOf('host preconditions not met:'))).toEqual([
      'host preconditions not met:',
      `  ${STALE}  file ${MODULE} sha256 ${sha256(MODULE_V2).slice(0, 12)}…: ${MODULE} sha256 is ${stale}…, expected ${sha256(MODULE_V2).slice(0, 12)}…`,
      '',
    ]);

    const { done } = await rollOut(patchId, [READY, STALE]);
    expect(hostOf(done, READY)).toMatchObject({ state: 'healthy', changed: true });
    expect(hostOf(done, STALE)).toMatchObject({ state: 'failed', changed: false, errorCode: 'precondition_failed' });
    expect(hostOf(done, STALE).reason).toMatch(/^host preconditions not met \(1 of 2\): .*; nothing was changed$/);
    expect(await readFile(join(rootOf(READY), CONF), 'utf8')).toBe(NEW);
    expect(await readFile(join(rootOf(STALE), CONF), 'utf8')).toBe(OLD);
  });

  it('attack: a precondition that probes outside the agent policy is refused by the agent, nothing read or run', async () => {
    await mkdir(join(rootOf(READY), 'root/.ssh'), { recursive: true });
    await writeFile(join(rootOf(READY), 'root/.ssh/authorized_keys'), 'ssh-ed25519 AAAA admin\n');
    const base = sampleFilePatch(CONF, NEW, { ticket: 'E2E-REQUIRES-PROBE' });
    const probing = await fleet.createPatch({
      ...base,
      change: {
        ...base.change,
        requires: [
          { file: '/root/.ssh/authorized_keys', sha256: sha256('ssh-ed25519 AAAA admin\n') },
          { command: ['/usr/bin/id'] },
        ],
      },
    } as PatchSpecInput);
    const rolloutId = await fleet.createRollout({ patchId: probing, target: { hostIds: [READY] }, waves: ['100%'] });
    const preflight = await fleet.api.post<PreflightResult>(`/v1/rollouts/${rolloutId}/preflight`, {
      timeoutSeconds: 20,
    });
    expect(preflight.results).toEqual([
      {
        hostId: READY,
        outcome: 'would_fail',
        errorCode: 'policy_denied',
        reason: expect.stringMatching(
          /^precondition file \/root\/.ssh\/authorized_keys sha256 .*: path \/root\/.ssh\/authorized_keys is outside the allowed roots/,
        ),
      },
    ]);
  });
});

describeNeeding([debTools], 'a package patch that requires another package at a version, judged by dpkg', () => {
  const WITH = 'pre-pkg-with';
  const WITHOUT = 'pre-pkg-without';
  let bed: DebTestBed;
  const roots = new Map<string, DpkgRoot>();

  beforeAll(async () => {
    bed = await createDebTestBed();
    for (const host of [WITH, WITHOUT]) {
      const root = await bed.newRoot(host);
      await root.install(bed.deb('fptest', '1.0'));
      if (host === WITH) await root.install(bed.deb('fpother', '1.0'));
      roots.set(host, root);
      const configFile = join(work, host, 'agent.json');
      await mkdir(join(work, host), { recursive: true });
      await writeFile(configFile, JSON.stringify({ apt: { ...root.driverOptions, allowedPackages: ['fptest'] } }));
      fleet.spawnAgent({
        id: host,
        joinToken: await fleet.register(host),
        dataDir: join(work, host, 'data'),
        rootDir: root.root,
        configFile,
      });
    }
    await fleet.waitOnline([WITH, WITHOUT]);
  });

  afterAll(async () => {
    await bed?.dispose();
  });

  it('preflight names the host without it; the rollout changes only the host with it', async () => {
    const patch = samplePackagePatch({ name: 'fptest', version: '2.0', expectedPriorVersion: '1.0' });
    const patchId = await fleet.createPatch({
      ...patch,
      change: { ...patch.change, requires: [{ package: 'fpother', version: '>= 1.0~' }] },
    } as PatchSpecInput);
    const rolloutId = await fleet.createRollout({ patchId, target: { hostIds: [WITH, WITHOUT] }, waves: ['100%'] });
    const preflight = await preflightByCli(rolloutId);
    expect(preflight.code).toBe(3);
    expect(preflight.lines.find((l) => l.startsWith(WITHOUT))).toMatch(
      new RegExp(`^${WITHOUT} +would_fail +- +precondition_failed: host preconditions not met \\(1 of 1, below\\)$`),
    );
    expect(preflight.lines).toContain(`  ${WITHOUT}  package fpother >= 1.0~: fpother is not installed`);
    expect(preflight.lines.find((l) => l.startsWith(WITH))).toMatch(new RegExp(`^${WITH} +would_apply`));

    const { done } = await rollOut(patchId, [WITH, WITHOUT]);
    expect(hostOf(done, WITH)).toMatchObject({ state: 'healthy', changed: true });
    expect(hostOf(done, WITHOUT)).toMatchObject({ state: 'failed', changed: false, errorCode: 'precondition_failed' });
    expect(await roots.get(WITH)?.query('fptest')).toEqual({ status: 'ii', version: '2.0' });
    expect(await roots.get(WITHOUT)?.query('fptest')).toEqual({ status: 'ii', version: '1.0' });
  });

  it('a version constraint is compared as dpkg compares: fpother 1.0 is not >> 1.0, and is << 1:0.1', async () => {
    const patch = samplePackagePatch({ name: 'fptest', version: '2.0' });
    const patchId = await fleet.createPatch({
      ...patch,
      change: {
        ...patch.change,
        requires: [
          { package: 'fpother', version: '>> 1.0' },
          { package: 'fpother', version: '<< 1:0.1' },
        ],
      },
    } as PatchSpecInput);
    const rolloutId = await fleet.createRollout({ patchId, target: { hostIds: [WITH] }, waves: ['100%'] });
    const preflight = await fleet.api.post<PreflightResult>(`/v1/rollouts/${rolloutId}/preflight`, {
      timeoutSeconds: 20,
    });
    expect(preflight.results).toEqual([
      expect.objectContaining({
        hostId: WITH,
        outcome: 'would_fail',
        errorCode: 'precondition_failed',
        reason: 'host preconditions not met (1 of 2): package fpother >> 1.0: fpother:all 1.0 installed, needs >> 1.0',
      }),
    ]);
  });
});
