import type { HealthCheck, OrderApply } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { AgentPolicy, type AgentPolicyConfig, type PackageFacts } from '../src/policy/agent-policy.js';
import { isCommandAllowed } from '../src/policy/allowed-commands.js';
import type { ResolveAll } from '../src/policy/allowed-destinations.js';
import { SENSITIVE_PATHS } from '../src/policy/sensitive-paths.js';
import { sampleApplyOrder, sampleFileChange } from './support/sample-orders.js';

const ROOTS: AgentPolicyConfig = { file: { allowedRoots: ['/'] }, health: {} };

function withChecks(...checks: HealthCheck[]): OrderApply {
  const order = sampleApplyOrder('o1');
  return { ...order, health: { ...order.health, checks } };
}

const fileTo = (path: string, overrides = {}) =>
  ({ ...sampleApplyOrder('o1'), change: sampleFileChange({ path, ...overrides }) }) as OrderApply;

describe('agent policy: files', () => {
  const policy = new AgentPolicy(ROOTS);

  it.each([
    '/etc/sudoers',
    '/etc/sudoers.d/x',
    '/etc/cron.d/x',
    '/etc/crontab',
    '/etc/cron.daily/job',
    '/etc/ld.so.preload',
    '/etc/ld.so.conf',
    '/etc/ld.so.conf.d/x.conf',
    '/etc/pam.d/sshd',
    '/etc/ssh/sshd_config',
    '/etc/ssh/sshd_config.d/x.conf',
    '/root/.ssh/authorized_keys',
    '/etc/systemd/system/evil.service',
    '/lib/systemd/system/evil.service',
    '/usr/lib/systemd/system/evil.service',
    '/run/systemd/system/evil.service',
    '/etc/profile.d/x.sh',
    '/etc/environment',
    '/etc/shadow',
    '/etc/passwd',
    '/etc/group',
    '/etc/gshadow',
    '/etc/apt/apt.conf.d/99hook',
    '/etc/udev/rules.d/99-x.rules',
    '/etc/fleetpatch/agent.json',
    // Run as root by the agent's own package changes (needrestart evals its configuration and runs
    // its hooks after every apply and revert; kernel, initramfs and grub hooks run from dpkg).
    '/etc/needrestart/needrestart.conf',
    '/etc/needrestart/conf.d/zz-fleet.conf',
    '/etc/needrestart/hook.d/10-dpkg',
    '/etc/needrestart/restart.d/sshd',
    '/etc/needrestart/notify.d/200-write',
    '/etc/kernel/postinst.d/zz',
    '/etc/initramfs-tools/hooks/zz',
    '/etc/default/grub',
    '/etc/default/grub.d/zz.cfg',
    '/etc/grub.d/40_custom',
    '/etc/ca-certificates/update.d/zz',
    '/etc/ssl/certs/ca-certificates.crt',
    '/usr/local/share/ca-certificates/evil.crt',
    '/etc/logrotate.conf',
    // What dpkg and apt read as root: maintainer scripts, the cache a revert's prior .deb comes from.
    '/var/lib/dpkg/info/fptest.prerm',
    '/var/lib/apt/lists/x',
    '/var/cache/apt/archives/fptest_1.0_all.deb',
    '/var/cache/debconf/config.dat',
    '/var/cache/fleetpatch/apt/fptest_2.0_all.deb',
    '/var/lib/fleetpatch-agent/orders/o1/entry.json',
    // Programs and libraries root runs: the agent runs dpkg and apt-get by name.
    '/usr/local/sbin/dpkg',
    '/usr/local/bin/apt-get',
    '/usr/local/lib/python3.11/dist-packages/apt.py',
    '/usr/bin/dpkg',
    '/usr/sbin/needrestart',
    '/usr/lib/x86_64-linux-gnu/libssl.so.3',
    '/usr/share/perl5/Debconf/Db.pm',
    '/etc/perl/Debconf.pm',
    '/etc/python3.11/sitecustomize.py',
    '/bin/sh',
    '/lib/x86_64-linux-gnu/libc.so.6',
    '/boot/grub/grub.cfg',
    // Run as root at boot or on an event.
    '/etc/sysctl.conf',
    '/etc/sysctl.d/99-core.conf',
    '/etc/binfmt.d/x.conf',
    '/etc/tmpfiles.d/x.conf',
    '/etc/fstab',
    '/etc/exports',
    '/etc/network/if-up.d/x',
    '/etc/NetworkManager/dispatcher.d/x',
    '/etc/dhcp/dhclient-exit-hooks.d/x',
    '/etc/rc.local',
    '/etc/rc2.d/S01x',
    '/var/lib/polkit-1/localauthority/50-local.d/x.pkla',
    // Read by root's own shells and tools.
    '/etc/bash_completion.d/x',
    '/etc/zsh/zshrc',
    '/etc/ssh/ssh_config.d/x.conf',
    '/etc/gitconfig',
  ])('refuses %s even under an allowed root /, naming the rule', async (path) => {
    const verdict = await policy.checkOrder(fileTo(path));
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(verdict.ok === false && verdict.reason).toContain('file.allowedSensitivePaths');
  });

  it("refuses the agent's own data and staging directories, wherever configured, even listed as sensitive paths", async () => {
    const own = new AgentPolicy(
      { file: { allowedRoots: ['/'], allowedSensitivePaths: ['/srv/agent/orders/o1/entry.json'] }, health: {} },
      { ownDirectories: ['/srv/agent', '/srv/staging'] },
    );
    for (const path of ['/srv/agent/orders/o1/entry.json', '/srv/agent', '/srv/staging/x.deb']) {
      const verdict = await own.checkOrder(fileTo(path));
      expect(verdict, path).toMatchObject({ ok: false, code: 'policy_denied' });
      expect(verdict.ok === false && verdict.reason, path).toContain("the agent's own data");
    }
    expect(await own.checkOrder(fileTo('/srv/agent-other/x'))).toEqual({ ok: true });
  });

  it('allows a sensitive path listed exactly, and only that one', async () => {
    const listed = new AgentPolicy({
      ...ROOTS,
      file: { allowedRoots: ['/'], allowedSensitivePaths: ['/etc/cron.d/app'] },
    });
    expect(await listed.checkOrder(fileTo('/etc/cron.d/app'))).toEqual({ ok: true });
    expect((await listed.checkOrder(fileTo('/etc/cron.d/other'))).ok).toBe(false);
  });

  it('allows ordinary paths: /etc/x.conf, /etc/cronos-not (no), /opt/app/conf', async () => {
    expect(await policy.checkOrder(fileTo('/etc/app.conf'))).toEqual({ ok: true });
    expect(await policy.checkOrder(fileTo('/opt/app/conf'))).toEqual({ ok: true });
    // A prefix rule is a prefix: /etc/cronos is refused too, on the safe side.
    expect((await policy.checkOrder(fileTo('/etc/cronos'))).ok).toBe(false);
  });

  it('refuses paths outside the allowed roots', async () => {
    const verdict = await new AgentPolicy().checkOrder(fileTo('/var/x'));
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(verdict.ok === false && verdict.reason).toContain('file.allowedRoots');
  });

  it('refuses setuid, setgid and sticky modes even when the patch allows them, unless the agent does', async () => {
    for (const mode of ['4755', '2755', '1755', '06755']) {
      const order = fileTo('/opt/bin/x', { mode, allowSpecialModes: true, owner: '0' });
      const verdict = await policy.checkOrder(order);
      expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
      expect(verdict.ok === false && verdict.reason).toContain('file.allowSpecialModes');
    }
    const lax = new AgentPolicy({ file: { allowedRoots: ['/'], allowSpecialModes: true }, health: {} });
    expect(await lax.checkOrder(fileTo('/opt/bin/x', { mode: '4755', allowSpecialModes: true }))).toEqual({ ok: true });
  });

  it('limits owners and groups when the agent lists them', async () => {
    const owners = new AgentPolicy({
      file: { allowedRoots: ['/'], allowedOwners: ['root', '0'], allowedGroups: ['root'] },
      health: {},
    });
    expect(await owners.checkOrder(fileTo('/opt/x', { owner: 'root', group: 'root' }))).toEqual({ ok: true });
    expect(await owners.checkOrder(fileTo('/opt/x', { owner: 'www-data' }))).toMatchObject({ ok: false });
    expect(await owners.checkOrder(fileTo('/opt/x', { group: 'adm' }))).toMatchObject({ ok: false });
  });

  it('covers every entry of the sensitive list', () => {
    expect(SENSITIVE_PATHS.length).toBeGreaterThan(20);
  });
});

describe('agent policy: health checks', () => {
  const fakeDns =
    (answers: Record<string, string[]>): ResolveAll =>
    async (host) =>
      (answers[host] ?? []).map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

  const http = (url: string): HealthCheck => ({
    kind: 'http',
    url,
    expectStatus: { min: 200, max: 399 },
    timeoutMs: 1000,
  });
  const tcp = (host: string, port: number): HealthCheck => ({ kind: 'tcp', host, port, timeoutMs: 1000 });

  it('allows loopback by default, by address and by localhost', async () => {
    const policy = new AgentPolicy(undefined, { resolveAll: fakeDns({ localhost: ['127.0.0.1', '::1'] }) });
    for (const check of [
      http('http://127.0.0.1:8080/'),
      http('http://[::1]/'),
      http('http://localhost:9/'),
      tcp('127.0.0.2', 22),
    ])
      expect(await policy.checkOrder(withChecks(check))).toEqual({ ok: true });
  });

  it('refuses http and tcp to other destinations (SSRF, port scans)', async () => {
    const policy = new AgentPolicy(undefined, { resolveAll: fakeDns({}) });
    for (const check of [
      http('http://10.0.0.5/'),
      http('http://169.254.169.254/latest/meta-data/'),
      http('http://internal.example/'),
      http('http://0.0.0.0:8080/'),
      tcp('10.0.0.5', 22),
      tcp('db.internal', 5432),
    ]) {
      const verdict = await policy.checkOrder(withChecks(check));
      expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
      expect(verdict.ok === false && verdict.reason).toContain('health.allowedDestinations');
    }
  });

  it('refuses an allowed name that resolves to a non-loopback address', async () => {
    const policy = new AgentPolicy(undefined, { resolveAll: fakeDns({ localhost: ['10.0.0.5'] }) });
    const verdict = await policy.checkOrder(withChecks(http('http://localhost:8080/')));
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(verdict.ok === false && verdict.reason).toContain('10.0.0.5');
  });

  it('honours ports and CIDRs in allowedDestinations', async () => {
    const policy = new AgentPolicy(
      {
        file: { allowedRoots: ['/etc'] },
        health: { allowedDestinations: ['10.1.0.0/16:443', 'db.internal:5432', '10.2.0.9'] },
      },
      { resolveAll: fakeDns({ 'db.internal': ['10.2.0.9'] }) },
    );
    expect(await policy.checkOrder(withChecks(http('https://10.1.2.3/')))).toEqual({ ok: true });
    expect((await policy.checkOrder(withChecks(http('http://10.1.2.3/')))).ok).toBe(false);
    expect(await policy.checkOrder(withChecks(tcp('db.internal', 5432)))).toEqual({ ok: true });
    expect((await policy.checkOrder(withChecks(tcp('db.internal', 22)))).ok).toBe(false);
    expect((await policy.checkOrder(withChecks(tcp('127.0.0.1', 22)))).ok).toBe(false);
  });

  it('confines file checks to the allowed roots and refuses the sensitive paths', async () => {
    const policy = new AgentPolicy();
    expect(await policy.checkOrder(withChecks({ kind: 'file', path: '/etc/x.conf' }))).toEqual({ ok: true });
    for (const path of ['/var/lib/secret', '/etc/shadow', '/root/.ssh/id_ed25519']) {
      expect(await policy.checkOrder(withChecks({ kind: 'file', path }))).toMatchObject({
        ok: false,
        code: 'policy_denied',
      });
    }
    const wider = new AgentPolicy({
      file: { allowedRoots: ['/etc'] },
      health: { allowedFileRoots: ['/usr/share/app'] },
    });
    expect(await wider.checkOrder(withChecks({ kind: 'file', path: '/usr/share/app/VERSION' }))).toEqual({ ok: true });
  });

  it('allows command checks by full argv only', async () => {
    const curl = ['/usr/bin/curl', '-fsS', 'http://127.0.0.1:8080/health'];
    const allowed = [
      curl,
      '/usr/local/bin/check-app',
      { argvPrefix: ['/usr/bin/systemctl', 'is-active'], allowedArgs: ['nginx', 'php-fpm'] },
    ];
    expect(isCommandAllowed(curl, allowed)).toBe(true);
    // The case: an allowed curl that also writes a file.
    expect(isCommandAllowed([...curl, '-o', '/etc/cron.d/x'], allowed)).toBe(false);
    expect(isCommandAllowed(['/usr/bin/curl', '-o', '/tmp/x', 'http://evil/'], allowed)).toBe(false);
    // A string entry is the program without arguments (stricter than before i10).
    expect(isCommandAllowed(['/usr/local/bin/check-app'], allowed)).toBe(true);
    expect(isCommandAllowed(['/usr/local/bin/check-app', '--write', '/x'], allowed)).toBe(false);
    expect(isCommandAllowed(['/usr/bin/systemctl', 'is-active', 'nginx', 'php-fpm'], allowed)).toBe(true);
    expect(isCommandAllowed(['/usr/bin/systemctl', 'is-active', 'ssh'], allowed)).toBe(false);
    const policy = new AgentPolicy({ file: { allowedRoots: ['/etc'] }, health: { allowedCommands: allowed } });
    const verdict = await policy.checkOrder(
      withChecks({ kind: 'command', argv: [...curl, '-o', '/opt/x'], timeoutMs: 1000 }),
    );
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
  });
});

describe('agent policy: packages', () => {
  const pkg = (name: string, version: string) =>
    ({
      ...sampleApplyOrder('o1'),
      change: { kind: 'package', manager: 'apt', name, version, revertable: true },
    }) as OrderApply;
  const facts = (installed: Record<string, string>, sources: Record<string, string> = {}): PackageFacts => ({
    installedVersion: async (name) => installed[name],
    sourcePackageOf: async (name) => sources[name],
    // Enough of Debian ordering for these cases; the real one is dpkg --compare-versions.
    isLower: async (a, b) => a.localeCompare(b, 'en', { numeric: true }) < 0,
    resolve: async () => {
      throw new Error('these cases name their packages; nothing to resolve');
    },
  });

  it('refuses package changes without an apt section', async () => {
    expect(await new AgentPolicy().checkOrder(pkg('fptest', '1.0'))).toMatchObject({
      ok: false,
      code: 'policy_denied',
    });
  });

  it('allows listed packages and packages of listed sources only', async () => {
    const policy = new AgentPolicy(
      {
        file: { allowedRoots: ['/etc'] },
        health: {},
        apt: { allowedPackages: ['fptest'], allowedSourcePackages: ['openssl'] },
      },
      { packageFacts: facts({}, { libssl3: 'openssl', curl: 'curl' }) },
    );
    expect(await policy.checkOrder(pkg('fptest', '1.0'))).toEqual({ ok: true });
    expect(await policy.checkOrder(pkg('libssl3', '3.0.2'))).toEqual({ ok: true });
    const verdict = await policy.checkOrder(pkg('curl', '8.0'));
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(verdict.ok === false && verdict.reason).toContain('apt.allowedPackages');
  });

  it('refuses a downgrade unless apt.allowDowngrade', async () => {
    const base = { file: { allowedRoots: ['/etc'] }, health: {} };
    const strict = new AgentPolicy(
      { ...base, apt: { allowedPackages: ['fptest'] } },
      { packageFacts: facts({ fptest: '2.0' }) },
    );
    const verdict = await strict.checkOrder(pkg('fptest', '1.0'));
    expect(verdict).toMatchObject({ ok: false, code: 'policy_denied' });
    expect(verdict.ok === false && verdict.reason).toContain('apt.allowDowngrade');
    expect(await strict.checkOrder(pkg('fptest', '2.1'))).toEqual({ ok: true });
    const lax = new AgentPolicy(
      { ...base, apt: { allowedPackages: ['fptest'], allowDowngrade: true } },
      { packageFacts: facts({ fptest: '2.0' }) },
    );
    expect(await lax.checkOrder(pkg('fptest', '1.0'))).toEqual({ ok: true });
  });
});
