/**
 * Services after a change: restarts through systemctl (its argv, its failures, its timeout), stale
 * processes read from /proc (a real process on a real deleted library), the reboot flag — and all of
 * it against a real systemd in namespaces of its own (test/support/namespaced-systemd.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type PackageChange, PackageChangeSchema } from '@fleetpatch/shared';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../../../scripts/lib/local-fleet.mjs';
import { NamespacedSystemd, namespacedSystemdSupport } from '../../../test/support/namespaced-systemd.js';
import { describeNeeding, requirement, root } from '../../../test/support/requirements.js';
import { diskTmpdir } from '../../../test/support/scratch-tmpdir.js';
import { AfterChange } from '../src/services/after-change.js';
import { rebootCausedBy } from '../src/services/reboot-required.js';
import { SystemdServiceManager } from '../src/services/service-manager.js';
import {
  findStaleProcesses,
  parseNeedrestartBatch,
  staleFilesOf,
  unitOfCgroup,
} from '../src/services/stale-processes.js';

const log = pino({ level: 'silent' });
const signal = () => new AbortController().signal;

/** A small shared object this very process has loaded, to copy and preload into test processes. */
const LIBRARY = (() => {
  const maps = readFileSync('/proc/self/maps', 'utf8');
  const paths = maps.split('\n').map((line) => line.split(/\s+/).slice(5).join(' '));
  const found = ['libdl.so.2', 'libm.so.6'].flatMap((name) => paths.filter((p) => p.endsWith(`/${name}`)));
  if (!found[0]) throw new Error('no libdl.so.2 or libm.so.6 mapped by node to copy');
  return found[0];
})();

function packageChange(restart: PackageChange['restart']): PackageChange {
  return PackageChangeSchema.parse({ kind: 'package', manager: 'apt', name: 'libfp1', version: '2.0-1', restart });
}

/** What dpkg does to a library it upgrades: writes the new file beside it and renames it over. */
async function replaceLibrary(path: string): Promise<void> {
  await copyFile(LIBRARY, `${path}.dpkg-new`);
  await rename(`${path}.dpkg-new`, path);
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(diskTmpdir(), 'fleetpatch-services-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('SystemdServiceManager', () => {
  it('runs systemctl restart with an argument list, "--" before the unit, through the configured prefix', () => {
    expect(new SystemdServiceManager().restartArgv('nginx.service')).toEqual([
      'systemctl',
      'restart',
      '--no-ask-password',
      '--',
      'nginx.service',
    ]);
    const namespaced = new SystemdServiceManager({ systemctl: ['nsenter', '-t', '42', '-m', '--', 'systemctl'] });
    expect(namespaced.restartArgv('a.service')).toEqual([
      'nsenter',
      '-t',
      '42',
      '-m',
      '--',
      'systemctl',
      'restart',
      '--no-ask-password',
      '--',
      'a.service',
    ]);
  });

  it('reports a failed restart with its exit status and output, a hung one as timed out, a missing program', async () => {
    // A real program standing in for systemctl: it prints what it was given and fails.
    const failing = new SystemdServiceManager({
      systemctl: ['/bin/sh', '-c', 'echo "Job for $4 failed: $*" >&2; exit 1', 'sh'],
    });
    expect(await failing.restart('app.service', 'apply', signal())).toMatchObject({
      unit: 'app.service',
      when: 'apply',
      ok: false,
      detail: 'exited with status 1: Job for app.service failed: restart --no-ask-password -- app.service',
    });
    const hung = new SystemdServiceManager({ systemctl: ['/bin/sh', '-c', 'sleep 30', 'sh'], timeoutMs: 300 });
    expect(await hung.restart('app.service', 'revert', signal())).toMatchObject({ ok: false, detail: 'timed out' });
    const missing = new SystemdServiceManager({ systemctl: [join(dir, 'no-such-systemctl')] });
    expect((await missing.restart('app.service', 'apply', signal())).detail).toMatch(/^cannot run .*no-such-systemctl/);
    const working = new SystemdServiceManager({ systemctl: ['/bin/true'] });
    expect(await working.restart('app.service', 'apply', signal())).toMatchObject({ ok: true, detail: '' });
  });
});

describe('stale processes', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill('SIGKILL');
    child = undefined;
  });

  it('finds a real process still mapping a library that was replaced under it, and only deleted code', async () => {
    const lib = join(dir, 'libfp.so.1');
    await copyFile(LIBRARY, lib);
    child = spawn('/bin/sleep', ['30'], { env: { LD_PRELOAD: lib }, stdio: 'ignore' });
    const pid = child.pid as number;
    await waitFor('sleep to map the preloaded library', async () =>
      (await readFile(`/proc/${pid}/maps`, 'utf8')).includes(lib),
    );
    expect((await findStaleProcesses('/proc')).find((p) => p.pid === pid)).toBeUndefined();

    await replaceLibrary(lib);
    const stale = (await findStaleProcesses('/proc')).find((p) => p.pid === pid);
    expect(stale).toMatchObject({ pid, command: 'sleep', files: [lib] });
  });

  it('reads maps lines: deleted code files only, paths with spaces, never memfd or shared memory', () => {
    const maps = [
      '7f0000000000-7f0000001000 r-xp 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)',
      '7f0000001000-7f0000002000 r--p 00001000 08:01 123 /usr/lib/x86_64-linux-gnu/libssl.so.3 (deleted)',
      '7f0000002000-7f0000003000 r-xp 00000000 08:01 124 /usr/lib/x86_64-linux-gnu/libcrypto.so.3',
      '7f0000003000-7f0000004000 r-xp 00000000 08:01 125 /usr/sbin/nginx (deleted)',
      '7f0000004000-7f0000005000 rw-s 00000000 00:01 126 /memfd:wayland (deleted)',
      '7f0000005000-7f0000006000 rw-s 00000000 00:15 127 /dev/shm/cache (deleted)',
      '7f0000006000-7f0000007000 r--p 00000000 08:01 128 /var/lib/app/data.db (deleted)',
      '7f0000007000-7f0000008000 r-xp 00000000 08:01 129 /opt/my app/lib/libx.so (deleted)',
    ].join('\n');
    expect(staleFilesOf(maps)).toEqual([
      '/usr/lib/x86_64-linux-gnu/libssl.so.3',
      '/usr/sbin/nginx',
      '/opt/my app/lib/libx.so',
    ]);
  });

  it('names the unit of a process from its cgroup (v1 name=systemd or v2), none outside services', () => {
    expect(unitOfCgroup('0::/system.slice/nginx.service\n')).toBe('nginx.service');
    expect(unitOfCgroup('4:memory:/x\n1:name=systemd:/system.slice/getty@tty1.service\n')).toBe('getty@tty1.service');
    expect(unitOfCgroup('0::/user.slice/user-0.slice/session-1.scope\n')).toBeNull();
    expect(unitOfCgroup('4:memory:/system.slice/other.service\n')).toBeNull();
  });

  it("takes needrestart's batch answer: the services it names", () => {
    const batch =
      'NEEDRESTART-VER: 3.6\nNEEDRESTART-KSTA: 1\nNEEDRESTART-SVC: nginx.service\nNEEDRESTART-SVC: ssh.service\n';
    expect(parseNeedrestartBatch(batch)).toEqual(['nginx.service', 'ssh.service']);
  });

  it('blames a reboot on the change only when the flag is new or .pkgs gained its package', () => {
    const none = { required: false, packages: [] };
    const kernel = { required: true, packages: ['linux-image-amd64'] };
    expect(rebootCausedBy(none, kernel, ['libfp1'])).toBe(true);
    expect(rebootCausedBy(kernel, kernel, ['libfp1'])).toBe(false);
    expect(rebootCausedBy(kernel, { required: true, packages: ['linux-image-amd64', 'libfp1'] }, ['libfp1'])).toBe(
      true,
    );
    expect(rebootCausedBy(undefined, kernel, ['libfp1'])).toBe(false);
    expect(rebootCausedBy(none, none, ['libfp1'])).toBe(false);
  });
});

/** The processes (this machine's PIDs) that map `path` now. */
async function pidsMapping(path: string): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  const mapping = await Promise.all(
    pids.map(async (pid) => (await readFile(`/proc/${pid}/maps`, 'utf8').catch(() => '')).includes(path)),
  );
  return pids.filter((_, i) => mapping[i]);
}

describeNeeding(
  [root, requirement('systemd in namespaces', namespacedSystemdSupport())],
  'restarts against a real systemd',
  () => {
    let systemd: NamespacedSystemd | undefined;
    let lib: string;
    let hostRoot: string;
    beforeAll(async () => {
      lib = join(dir, 'libsvc.so.1');
      await copyFile(LIBRARY, lib);
      hostRoot = join(dir, 'root');
      await mkdir(join(hostRoot, 'var/run'), { recursive: true });
      const service = (extra = '') =>
        `[Unit]\nDefaultDependencies=no\n[Service]\nEnvironment=LD_PRELOAD=${lib}\nExecStart=/bin/sleep infinity\n${extra}`;
      systemd = await NamespacedSystemd.boot({
        'fp-app.service': service(),
        'fp-other.service': service(),
        'fp-broken.service': '[Unit]\nDefaultDependencies=no\n[Service]\nType=oneshot\nExecStart=/bin/false\n',
      });
    }, 60_000);
    afterAll(async () => {
      await systemd?.stop();
    });

    it('restarts the listed unit onto the new library; the report names the one left on the old, and the reboot it caused', async () => {
      const sd = systemd as NamespacedSystemd;
      // systemd counts a simple service started once it has forked: its sleep may map the library a
      // moment later, and one that maps it only after the "upgrade" would run on the new one. Both
      // must run on the old one first (a loaded machine once let fp-other start late).
      await waitFor(
        'both services to run on the library',
        async () =>
          sd.mainPid('fp-app.service') > 0 &&
          sd.mainPid('fp-other.service') > 0 &&
          (await pidsMapping(lib)).length >= 2,
      );
      const oldPid = sd.mainPid('fp-app.service');
      const otherPid = sd.mainPid('fp-other.service');
      expect(oldPid).toBeGreaterThan(0);
      const afterChange = new AfterChange({
        services: new SystemdServiceManager({ systemctl: sd.systemctlArgv, timeoutMs: 30_000 }),
        procDir: '/proc',
        root: hostRoot,
        needrestart: null,
      });
      const before = await afterChange.rebootBefore();
      // The "upgrade": the library is replaced under both services, and the package asks for a reboot.
      await replaceLibrary(lib);
      await writeFile(join(hostRoot, 'var/run/reboot-required'), '*** System restart required ***\n');
      await writeFile(join(hostRoot, 'var/run/reboot-required.pkgs'), 'libfp1\n');

      const report = await afterChange.run(
        packageChange({ afterApply: ['fp-app.service'], afterRevert: [] }),
        'apply',
        before,
        signal(),
        log,
      );
      const newPid = sd.mainPid('fp-app.service');
      expect(newPid).toBeGreaterThan(0);
      expect(newPid).not.toBe(oldPid);
      expect(report?.restarts).toEqual([
        { unit: 'fp-app.service', when: 'apply', ok: true, detail: '', ms: expect.any(Number) },
      ]);
      expect(report?.staleUnits).toContain('fp-other.service');
      expect(report?.staleUnits).not.toContain('fp-app.service');
      // PIDs here are this machine's (/proc), systemd's are its namespace's: matched by unit.
      expect(report?.staleProcesses.filter((p) => p.unit?.startsWith('fp-'))).toEqual([
        { pid: expect.any(Number), command: 'sleep', unit: 'fp-other.service', files: [lib] },
      ]);
      expect(sd.mainPid('fp-other.service')).toBe(otherPid);
      expect(report?.reboot).toEqual({ required: true, causedByThisChange: true, packages: ['libfp1'] });
    });

    it('reports a unit that fails to restart, with what systemctl said', async () => {
      const sd = systemd as NamespacedSystemd;
      const manager = new SystemdServiceManager({ systemctl: sd.systemctlArgv, timeoutMs: 30_000 });
      const outcome = await manager.restart('fp-broken.service', 'revert', signal());
      expect(outcome).toMatchObject({ unit: 'fp-broken.service', when: 'revert', ok: false });
      expect(outcome.detail).toMatch(/^exited with status 1: .*fp-broken\.service/s);
      const unknown = await manager.restart('fp-nonesuch.service', 'apply', signal());
      expect(unknown.detail).toMatch(/fp-nonesuch\.service not found/);
    });
  },
);
