import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type OrderResultBody, type Precondition, WIRE_LIMITS } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeNeeding } from '../../../test/support/requirements.js';
import { systemClock } from '../src/clock.js';
import { FileDriver } from '../src/drivers/file-driver.js';
import { SystemHealthProbe } from '../src/health/health-probe.js';
import { HealthRunner } from '../src/health/health-runner.js';
import { Journal } from '../src/journal.js';
import { OrderExecutor } from '../src/orders/order-executor.js';
import { AgentPolicy } from '../src/policy/agent-policy.js';
import type { AllowedCommand } from '../src/policy/allowed-commands.js';
import { AppliedSequences } from '../src/policy/applied-sequences.js';
import { SignedOrderCheck } from '../src/policy/signed-order-check.js';
import { InstalledPackages, type PackageInstance } from '../src/preconditions/installed-packages.js';
import { judgePackage, PreconditionChecker } from '../src/preconditions/precondition-check.js';
import { dpkgQuery, VULNERABLE_OPENSSL, writeStatusFile } from './support/dpkg-status.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';
import { newSigner, trustedKey } from './support/signed-statements.js';

// Real files under a throwaway root, real programs, the real dpkg-query over a status file: the
// agent's policy and its health probe judge a precondition exactly as they judge a health check.

const MODULE = '/etc/app/module.conf';
const MODULE_BYTES = 'module = 2\n';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
const ALLOWED: AllowedCommand[] = [
  ['/bin/true'],
  ['/bin/false'],
  ['/usr/bin/yes'],
  ['/bin/echo', '$(id)'],
  { argvPrefix: ['/bin/sh', '-c'], allowedArgs: ['echo to stderr >&2; exit 3'] },
];

let base: string;
let rootDir: string;
let policy: AgentPolicy;
let checker: PreconditionChecker;

function checkerFor(packages?: InstalledPackages): PreconditionChecker {
  const health = new HealthRunner(new SystemHealthProbe({ rootDir, policy }));
  return new PreconditionChecker({ health, policy, ...(packages ? { packages } : {}) });
}

const check = (requires: Precondition[]) => checker.check(requires, new AbortController().signal);

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), 'fleetpatch-preconditions-'));
  rootDir = join(base, 'root');
  await mkdir(join(rootDir, 'etc/app'), { recursive: true });
  await writeFile(join(rootDir, MODULE), MODULE_BYTES);
  policy = new AgentPolicy({ file: { allowedRoots: ['/etc/app'] }, health: { allowedCommands: ALLOWED } }, { rootDir });
  checker = checkerFor();
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

describe('a file precondition', () => {
  it('holds for the exact bytes, fails for others or for no file, and names every failure', async () => {
    expect(await check([{ file: MODULE, sha256: sha256(MODULE_BYTES) }, { file: MODULE }])).toMatchObject({
      ok: true,
      reason: '',
    });
    const verdict = await check([
      { file: MODULE, sha256: sha256('module = 1\n') },
      { file: '/etc/app/missing.conf' },
      { file: MODULE },
    ]);
    expect(verdict.ok).toBe(false);
    expect(verdict.outcomes.map((o) => o.ok)).toEqual([false, false, true]);
    expect(verdict.reason).toBe(
      `host preconditions not met (2 of 3): file ${MODULE} sha256 ${sha256('module = 1\n').slice(0, 12)}…: ` +
        `${MODULE} sha256 is ${sha256(MODULE_BYTES).slice(0, 12)}…, expected ${sha256('module = 1\n').slice(0, 12)}…; ` +
        'file /etc/app/missing.conf exists: /etc/app/missing.conf does not exist',
    );
  });

  it('attack: a path outside the roots a file check may read is refused by the policy, and not read', async () => {
    await mkdir(join(rootDir, 'srv'), { recursive: true });
    await writeFile(join(rootDir, 'srv/secret'), 'hunter2');
    const verdict = await check([{ file: '/srv/secret', sha256: sha256('hunter2') }]);
    expect(verdict.ok).toBe(false);
    expect(verdict.reason).toMatch(
      /refused by the agent policy: precondition file \/srv\/secret .*outside the allowed roots \(\/etc\/app; health.allowedFileRoots\)/,
    );
    // Guessing the secret's hash right does not turn the refusal into a pass: nothing was read.
    expect(verdict.reason).not.toMatch(/matches/);
    expect((await policy.checkPrecondition({ file: '/srv/secret' })).ok).toBe(false);
  });

  it('attack: a traversal (..) is refused by the agent even past the schema', async () => {
    const verdict = await policy.checkPrecondition({ file: '/etc/app/../../srv/secret' });
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(verdict.ok ? '' : verdict.reason).toMatch(/is not absolute and normalized/);
  });

  it('attack: a symlinked directory leading out of the root is refused, and a symlinked file is not followed', async () => {
    const outside = join(base, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'shadow'), 'root:x:0:0');
    await symlink(outside, join(rootDir, 'etc/app/linked'));
    const viaDir = await check([{ file: '/etc/app/linked/shadow', sha256: sha256('root:x:0:0') }]);
    expect(viaDir.ok).toBe(false);
    expect(viaDir.reason).toMatch(/refused by the agent policy: .*parent \/etc\/app\/linked is a symbolic link/);

    await symlink(join(outside, 'shadow'), join(rootDir, 'etc/app/link.conf'));
    const viaFile = await check([{ file: '/etc/app/link.conf', sha256: sha256('root:x:0:0') }]);
    expect(viaFile.ok).toBe(false);
    expect(viaFile.reason).toMatch(/\/etc\/app\/link.conf is a symlink, not a regular file; cannot compare sha256/);
  });

  it('attack: a path that hands out root is refused unless listed in file.allowedSensitivePaths', async () => {
    policy = new AgentPolicy({ file: { allowedRoots: ['/etc'] }, health: {} }, { rootDir });
    checker = checkerFor();
    const verdict = await check([{ file: '/etc/shadow', sha256: sha256('x') }]);
    expect(verdict.reason).toMatch(/path \/etc\/shadow is under \/etc\/shadow, which can hand out root/);
  });
});

describe('a command precondition', () => {
  it('holds when the allowed argv exits 0, fails with its exit and output otherwise', async () => {
    expect((await check([{ command: ['/bin/true'] }])).ok).toBe(true);
    const verdict = await check([
      { command: ['/bin/false'] },
      { command: ['/bin/sh', '-c', 'echo to stderr >&2; exit 3'] },
    ]);
    expect(verdict.outcomes).toEqual([
      { precondition: 'command /bin/false', ok: false, observed: 'exit 1' },
      {
        precondition: 'command /bin/sh -c "echo to stderr >&2; exit 3"',
        ok: false,
        observed: 'exit 3; stderr: to stderr',
      },
    ]);
  });

  it('attack: an argv not listed exactly in health.allowedCommands is refused and never runs', async () => {
    const marker = join(base, 'ran');
    for (const command of [
      ['/usr/bin/touch', marker],
      ['/bin/true', '--extra'],
      ['/bin/sh', '-c', `touch ${marker}`],
    ]) {
      const verdict = await check([{ command }]);
      expect(verdict.ok).toBe(false);
      expect(verdict.reason).toMatch(
        /refused by the agent policy: .*is not allowed on this agent: health.allowedCommands/,
      );
    }
    await expect(readFile(marker)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('attack: no shell reads its arguments', async () => {
    const verdict = await check([{ command: ['/bin/echo', '$(id)'] }]);
    expect(verdict.outcomes[0]).toMatchObject({ ok: true, observed: 'exit 0; stdout: $(id)' });
  });

  it('attack: endless output is cut short and the program killed at its timeout', async () => {
    const started = Date.now();
    const verdict = await check([{ command: ['/usr/bin/yes'], timeoutMs: 300 }]);
    expect(verdict.ok).toBe(false);
    const [outcome] = verdict.outcomes;
    expect(outcome?.observed).toMatch(/^no exit within 300 ms \(killed\); stdout: y\ny\n/);
    expect(outcome?.observed.length).toBeLessThanOrEqual(WIRE_LIMITS.observedChars);
    expect(Date.now() - started).toBeLessThan(5_000);
  });
});

describe('a package precondition, judged as dpkg compares versions', () => {
  const installed = (version: string, architecture = 'amd64'): PackageInstance => ({
    version,
    architecture,
    state: 'installed',
  });

  it('compares epochs, tildes and revisions as dpkg does', () => {
    const judge = (version: string, constraint: string) =>
      judgePackage({ package: 'libfoo', version: constraint }, [installed(version)]).ok;
    expect(judge('1.2-3', '>= 1.2-3')).toBe(true);
    expect(judge('1.2-2', '>= 1.2-3')).toBe(false);
    // An epoch outweighs any upstream version.
    expect(judge('1:0.1', '>> 9.9')).toBe(true);
    expect(judge('9.9', '<< 1:0.1')).toBe(true);
    // A tilde sorts before everything, even the end: a pre-release or backport is lower.
    expect(judge('1.2~rc1-1', '>= 1.2-1')).toBe(false);
    expect(judge('3.0.14-1~deb12u2', '<< 3.0.14-1')).toBe(true);
    // Equal as dpkg reads them: a missing epoch is 0, leading zeros do not count.
    expect(judge('0:1.02-1', '= 1.2-1')).toBe(true);
    expect(judge('1.10', '>> 1.9')).toBe(true);
  });

  it('fails a package that is not installed, unless allowAbsent; one half-way fails either way', () => {
    expect(judgePackage({ package: 'libfoo', version: '>= 1' }, [])).toEqual({
      ok: false,
      observed: 'libfoo is not installed',
    });
    expect(judgePackage({ package: 'libfoo', version: '<< 2', allowAbsent: true }, [])).toEqual({
      ok: true,
      observed: 'libfoo is not installed (allowed)',
    });
    const configFiles = { version: '1.0', architecture: 'amd64', state: 'config-files' };
    expect(judgePackage({ package: 'libfoo' }, [configFiles]).observed).toBe('libfoo is not installed');
    const awaiting = { version: '2.0', architecture: 'amd64', state: 'triggers-awaited' };
    expect(judgePackage({ package: 'libfoo', version: '>= 2.0' }, [awaiting]).ok).toBe(true);
    const half = { version: '2.0', architecture: 'amd64', state: 'half-configured' };
    expect(judgePackage({ package: 'libfoo', allowAbsent: true }, [half])).toEqual({
      ok: false,
      observed: 'libfoo 2.0 is half-configured (dpkg), not installed',
    });
  });

  it('needs every installed architecture to satisfy the constraint', () => {
    const both = [installed('2.0-1', 'amd64'), installed('1.0-1', 'i386')];
    expect(judgePackage({ package: 'libfoo', version: '>= 2.0' }, both)).toEqual({
      ok: false,
      observed: 'libfoo:amd64 2.0-1, libfoo:i386 1.0-1 installed, needs >= 2.0',
    });
  });

  it('fails, saying so, on an agent that reads no dpkg database', async () => {
    expect((await check([{ package: 'libfoo' }])).reason).toBe(
      'host preconditions not met (1 of 1): package libfoo installed: this agent reads no dpkg database',
    );
  });
});

describeNeeding([dpkgQuery], 'a package precondition over a real dpkg database', () => {
  it('reads the installed versions with dpkg-query, per architecture, and judges them', async () => {
    const dpkgRoot = join(base, 'dpkg-root');
    await writeStatusFile(dpkgRoot, VULNERABLE_OPENSSL);
    checker = checkerFor(new InstalledPackages({ root: dpkgRoot }));
    const verdict = await check([
      { package: 'libssl3', version: '>= 3.0.14-1~deb12u2' },
      { package: 'openssl', version: '>= 3.0.15-1~deb12u1' },
      { package: 'curl' },
      { package: 'oldpkg', allowAbsent: true },
      { package: 'nosuchpkg' },
    ]);
    expect(verdict.outcomes).toEqual([
      {
        precondition: 'package libssl3 >= 3.0.14-1~deb12u2',
        ok: true,
        observed:
          'libssl3:amd64 3.0.14-1~deb12u2, libssl3:i386 3.0.14-1~deb12u2 installed, satisfies >= 3.0.14-1~deb12u2',
      },
      {
        precondition: 'package openssl >= 3.0.15-1~deb12u1',
        ok: false,
        observed: 'openssl:amd64 3.0.14-1~deb12u2 installed, needs >= 3.0.15-1~deb12u1',
      },
      {
        precondition: 'package curl installed',
        ok: false,
        observed: 'curl 7.88.1-10+deb12u7 is half-configured (dpkg), not installed',
      },
      {
        precondition: 'package oldpkg installed (or not installed)',
        ok: true,
        observed: 'oldpkg is not installed (allowed)',
      },
      { precondition: 'package nosuchpkg installed', ok: false, observed: 'nosuchpkg is not installed' },
    ]);
  });
});

describe('the executor with a change that requires', () => {
  let results: OrderResultBody[];
  let executor: OrderExecutor;
  let journal: Journal;
  const CONF = '/etc/app/app.conf';

  async function executorWith(extra: { signing?: SignedOrderCheck } = {}): Promise<OrderExecutor> {
    return new OrderExecutor({
      journal,
      drivers: { file: new FileDriver({ rootDir, allowedRoots: ['/etc/app'] }) },
      health: new HealthRunner(new SystemHealthProbe({ rootDir, policy })),
      clock: systemClock,
      log: pino({ level: 'silent' }),
      policy,
      events: { progress: () => {}, result: (r) => results.push(r) },
      ...extra,
    });
  }

  beforeEach(async () => {
    results = [];
    await writeFile(join(rootDir, CONF), 'old\n');
    journal = await Journal.open(join(base, 'data'));
    executor = await executorWith();
  });

  const change = (requires: Precondition[]) => sampleFileChange({ path: CONF, content: 'new\n', requires });
  const wrongModule = { file: MODULE, sha256: sha256('module = 1\n') };

  it('answers a preflight would_fail, precondition_failed, naming what does not hold', async () => {
    await executor.preflight({ type: 'order.preflight', orderId: 'pf-1', change: change([wrongModule]) });
    expect(results).toEqual([
      expect.objectContaining({
        orderId: 'pf-1',
        outcome: 'would_fail',
        errorCode: 'precondition_failed',
        changed: false,
        reason: expect.stringMatching(/^host preconditions not met \(1 of 1\): file \/etc\/app\/module.conf sha256 /),
        preconditions: [
          {
            precondition: `file ${MODULE} sha256 ${wrongModule.sha256.slice(0, 12)}…`,
            ok: false,
            observed: `${MODULE} sha256 is ${sha256(MODULE_BYTES).slice(0, 12)}…, expected ${wrongModule.sha256.slice(0, 12)}…`,
          },
        ],
      }),
    ]);
  });

  it('refuses the apply precondition_failed before any snapshot, and the file is untouched', async () => {
    const order = sampleApplyOrder('ap-1', {
      change: change([wrongModule]),
      health: { ...sampleApplyOrder('x').health, checks: [] },
    });
    await executor.apply(order);
    expect(results).toEqual([
      expect.objectContaining({
        orderId: 'ap-1',
        outcome: 'failed',
        errorCode: 'precondition_failed',
        changed: false,
        reason: expect.stringMatching(/^host preconditions not met .*; nothing was changed$/),
      }),
    ]);
    expect(await readFile(join(rootDir, CONF), 'utf8')).toBe('old\n');
    // Refused before the snapshot: the journal records none, and its directory was never made.
    expect(journal.get('ap-1')).toMatchObject({ phase: 'done' });
    expect(journal.get('ap-1')).not.toHaveProperty('snapshot');
    await expect(readdir(journal.snapshotDir('ap-1'))).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('applies when every precondition holds', async () => {
    const order = sampleApplyOrder('ap-2', {
      change: change([{ file: MODULE, sha256: sha256(MODULE_BYTES) }, { command: ['/bin/true'] }]),
      health: { ...sampleApplyOrder('x').health, checks: [] },
    });
    await executor.apply(order);
    expect(results).toEqual([expect.objectContaining({ orderId: 'ap-2', outcome: 'healthy', changed: true })]);
    expect(await readFile(join(rootDir, CONF), 'utf8')).toBe('new\n');
  });

  it('attack: a precondition outside the policy refuses the whole order before it is journaled', async () => {
    const order = sampleApplyOrder('ap-3', { change: change([{ command: ['/usr/bin/id'] }]) });
    await executor.apply(order);
    expect(results).toEqual([
      expect.objectContaining({
        outcome: 'failed',
        errorCode: 'policy_denied',
        reason: expect.stringMatching(/^precondition command \/usr\/bin\/id: \["\/usr\/bin\/id"\] is not allowed/),
      }),
    ]);
    expect(await readFile(join(rootDir, CONF), 'utf8')).toBe('old\n');
  });

  it('attack: where orders must be signed, an unsigned dry run runs no program (a stolen coordinator cannot probe at will)', async () => {
    const marker = join(base, 'probed');
    policy = new AgentPolicy(
      { file: { allowedRoots: ['/etc/app'] }, health: { allowedCommands: [['/usr/bin/touch', marker]] } },
      { rootDir },
    );
    const signing = new SignedOrderCheck(
      {
        trustedKeys: [trustedKey(newSigner(), ['author'])],
        requiredSignatures: 1,
        requireRoles: [],
        clockSkewSeconds: 60,
      },
      await AppliedSequences.open(join(base, 'data')),
      () => 'web-1',
    );
    executor = await executorWith({ signing });
    await executor.preflight({
      type: 'order.preflight',
      orderId: 'pf-signed',
      change: change([{ file: MODULE, sha256: sha256(MODULE_BYTES) }, { command: ['/usr/bin/touch', marker] }]),
    });
    expect(results).toEqual([
      expect.objectContaining({
        outcome: 'would_apply',
        reason: expect.stringMatching(
          /; command preconditions not run by this dry run: this agent requires signed orders, .*: command \/usr\/bin\/touch /,
        ),
      }),
    ]);
    await expect(readFile(marker)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
