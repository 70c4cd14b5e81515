/**
 * Real .deb packages, a local apt repository and throwaway dpkg roots for tests: nothing here
 * touches this machine's dpkg database or `/`.
 *
 * Every dpkg and apt command runs unprivileged — as `nobody` through `setpriv` when the tests run
 * as root, always under `fakeroot` — with `dpkg --root=DIR --force-not-root
 * --force-script-chrootless`. Maintainer scripts then run against the real `/` but as nobody, and
 * the test packages' scripts only write under `$DPKG_ROOT`.
 *
 * Typical use:
 *   const bed = await createDebTestBed();            // builds the standard packages + repository
 *   const host = await bed.newRoot();                // an empty dpkg root with apt indexes
 *   await host.install(bed.deb('fptest', '1.0'));    // seed a prior version
 *   const driver = new AptDriver(host.driverOptions);
 *   ...
 *   await bed.dispose();
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { accessSync, constants } from 'node:fs';
import { chmod, chown, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { type Requirement, requirement } from '../../../../test/support/requirements.js';
import type { AptDriverOptions } from '../../src/drivers/apt-driver.js';

const execFileAsync = promisify(execFile);

/** The uid/gid commands run as when the tests run as root (`nobody` on Debian). */
export const UNPRIVILEGED_ID = 65534;

const isRoot = process.getuid?.() === 0;

/** What every command in a throwaway root is prefixed with: drop to nobody, then fakeroot. */
export const UNPRIVILEGED_PREFIX: readonly string[] = isRoot
  ? ['setpriv', `--reuid=${UNPRIVILEGED_ID}`, `--regid=${UNPRIVILEGED_ID}`, '--clear-groups', '--', 'fakeroot', '--']
  : ['fakeroot', '--'];

const DPKG_TEST_OPTIONS = ['--force-not-root', '--force-script-chrootless'] as const;

const TEST_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Whether the real tools are here, and if not why; tests that need them say so with `debTools`.
 */
export function debToolsAvailable(): { available: true } | { available: false; reason: string } {
  if (process.platform !== 'linux') return { available: false, reason: 'dpkg tests need Linux' };
  const needed = ['dpkg', 'dpkg-deb', 'dpkg-query', 'dpkg-scanpackages', 'apt-get', 'apt-config', 'fakeroot'];
  if (isRoot) needed.push('setpriv');
  const missing = missingTools(needed);
  if (missing.length > 0) {
    return {
      available: false,
      reason: `missing ${missing.join(', ')} (apt-get install dpkg-dev fakeroot${isRoot ? ' util-linux' : ''})`,
    };
  }
  return { available: true };
}

/** The programs of `tools` found neither on PATH nor in the usual sbin/bin directories. */
export function missingTools(tools: readonly string[]): string[] {
  const path = (process.env.PATH ?? TEST_PATH).split(delimiter).concat(TEST_PATH.split(':'));
  return tools.filter(
    (tool) =>
      !path.some((dir) => {
        try {
          accessSync(join(dir, tool), constants.X_OK);
          return true;
        } catch {
          return false;
        }
      }),
  );
}

/** What a test that runs real dpkg and apt needs: see `debToolsAvailable`. */
export const debTools: Requirement = requirement('Debian package tools', debToolsAvailable());

/** One test package. Scripts are `sh` bodies; `set -e` and a shebang are added. */
export interface DebSpec {
  name: string;
  version: string;
  /** Default `all`. */
  architecture?: string;
  /** The `Source:` field: the source package it is built from (`name`, or `name (version)` for a binNMU). */
  source?: string;
  depends?: string;
  conflicts?: string;
  /** Plain files: absolute path inside the package → content. */
  files?: Readonly<Record<string, string>>;
  /** Config files (listed in DEBIAN/conffiles): absolute path under /etc → content. */
  conffiles?: Readonly<Record<string, string>>;
  preinst?: string;
  postinst?: string;
  prerm?: string;
  postrm?: string;
}

/** A postinst that fails while `$DPKG_ROOT/<marker>` exists. */
export function failWhenMarkerScript(marker: string): string {
  return `if [ -e "$DPKG_ROOT/${marker}" ]; then echo "failing because ${marker} exists" >&2; exit 1; fi`;
}

/**
 * A script that writes dpkg's pid to `$DPKG_ROOT/started-<tag>` and then waits until
 * `$DPKG_ROOT/release-<tag>` exists, or dpkg is gone (so a killed dpkg leaves no script behind).
 */
export function waitForReleaseScript(tag: string): string {
  return [
    `echo $PPID > "$DPKG_ROOT/started-${tag}.tmp"`,
    `mv "$DPKG_ROOT/started-${tag}.tmp" "$DPKG_ROOT/started-${tag}"`,
    `while [ ! -e "$DPKG_ROOT/release-${tag}" ] && kill -0 $PPID 2>/dev/null; do sleep 0.02; done`,
  ].join('\n');
}

/** Builds `spec` with `dpkg-deb --build` into `outDir` and returns the .deb path. */
export async function buildDeb(spec: DebSpec, outDir: string): Promise<string> {
  const arch = spec.architecture ?? 'all';
  const tree = await mkdtemp(join(tmpdir(), `fleetpatch-debsrc-${spec.name}-`));
  try {
    const control = join(tree, 'DEBIAN');
    await mkdir(control, { mode: 0o755 });
    const lines = [
      `Package: ${spec.name}`,
      `Version: ${spec.version}`,
      `Architecture: ${arch}`,
      ...(spec.source ? [`Source: ${spec.source}`] : []),
      'Maintainer: fleetpatch tests <tests@fleetpatch.invalid>',
      ...(spec.depends ? [`Depends: ${spec.depends}`] : []),
      ...(spec.conflicts ? [`Conflicts: ${spec.conflicts}`] : []),
      `Description: fleetpatch test package ${spec.name} ${spec.version}`,
    ];
    await writeFile(join(control, 'control'), `${lines.join('\n')}\n`, { mode: 0o644 });
    const all = { ...spec.files, ...spec.conffiles };
    for (const [path, content] of Object.entries(all)) {
      const target = join(tree, path);
      await mkdir(dirname(target), { recursive: true, mode: 0o755 });
      await writeFile(target, content, { mode: 0o644 });
    }
    // Like dh_md5sums: real packages ship md5sums of their non-config files.
    const md5sums = Object.entries(spec.files ?? {}).map(
      ([path, content]) => `${createHash('md5').update(content).digest('hex')}  ${path.replace(/^\//, '')}`,
    );
    if (md5sums.length > 0) await writeFile(join(control, 'md5sums'), `${md5sums.join('\n')}\n`, { mode: 0o644 });
    const conffiles = Object.keys(spec.conffiles ?? {});
    if (conffiles.length > 0) await writeFile(join(control, 'conffiles'), `${conffiles.join('\n')}\n`);
    for (const script of ['preinst', 'postinst', 'prerm', 'postrm'] as const) {
      const body = spec[script];
      if (body === undefined) continue;
      await writeFile(join(control, script), `#!/bin/sh\nset -e\n${body}\nexit 0\n`, { mode: 0o755 });
      await chmod(join(control, script), 0o755);
    }
    const out = join(outDir, `${spec.name}_${spec.version.replaceAll(':', '%3a')}_${arch}.deb`);
    await execFileAsync('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z1', '--build', tree, out], {
      env: { ...process.env, PATH: TEST_PATH, LC_ALL: 'C' },
    });
    return out;
  } finally {
    await rm(tree, { recursive: true, force: true });
  }
}

export interface AptRepository {
  dir: string;
  /** The `sources.list` line for this repository (flat, unsigned, trusted). */
  sourcesLine: string;
}

/**
 * A flat apt repository in `dir` holding `debs`: the files, `Packages` (dpkg-scanpackages
 * --multiversion, so older versions stay downloadable) and a `Release` with its sha256, which keeps
 * `apt-get update` quiet about missing compressed indexes.
 */
export async function createAptRepository(dir: string, debs: readonly string[]): Promise<AptRepository> {
  await mkdir(dir, { recursive: true });
  for (const deb of debs) {
    const target = join(dir, deb.split('/').pop() ?? deb);
    if (target !== deb) await copyFile(deb, target);
  }
  const { stdout } = await execFileAsync('dpkg-scanpackages', ['--multiversion', '.', '/dev/null'], {
    cwd: dir,
    env: { ...process.env, PATH: TEST_PATH, LC_ALL: 'C' },
    maxBuffer: 16 * 1024 * 1024,
  });
  await writeFile(join(dir, 'Packages'), stdout);
  const sha = createHash('sha256').update(stdout).digest('hex');
  const release = [
    'Origin: fleetpatch-test',
    'Label: fleetpatch-test',
    `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
    'SHA256:',
    ` ${sha} ${Buffer.byteLength(stdout)} Packages`,
  ];
  await writeFile(join(dir, 'Release'), `${release.join('\n')}\n`);
  return { dir, sourcesLine: `deb [trusted=yes] file:${dir} ./` };
}

/** A throwaway dpkg root with apt pointed at one repository. */
export interface DpkgRoot {
  root: string;
  /** Options for `new AptDriver(...)` that keep every command inside this root, unprivileged. */
  driverOptions: AptDriverOptions;
  /** Runs a program through the unprivileged prefix with this root's environment. */
  run(argv: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }>;
  /** `dpkg --install` of a .deb into this root (seeding a prior version); throws if dpkg fails. */
  install(deb: string): Promise<void>;
  /** Starts `dpkg --install` without waiting, e.g. to hold the dpkg lock during a slow preinst. */
  startInstall(deb: string): ChildProcess;
  /** `{ status, version }` from dpkg-query (`status` like `ii`, `iF`, `iHR`), or undefined if unknown. */
  query(name: string): Promise<{ status: string; version: string } | undefined>;
  /** `dpkg --audit` output; empty when clean. */
  audit(): Promise<string>;
  /** A path inside the root. */
  path(relative: string): string;
  /** Writes a file inside the root, owned by the unprivileged user (an admin's edit, a marker). */
  writeFile(relative: string, content: string): Promise<void>;
}

/** Creates `<dir>` as a dpkg root using `repo`, runs `apt-get update` in it, and returns it. */
export async function createDpkgRoot(dir: string, repo: AptRepository, home: string): Promise<DpkgRoot> {
  const dirs = [
    'var/lib/dpkg/info',
    'var/lib/dpkg/updates',
    'var/lib/dpkg/triggers',
    'var/lib/dpkg/alternatives',
    'var/lib/apt/lists/partial',
    'var/cache/apt/archives/partial',
    'var/cache/fleetpatch',
    'var/log/apt',
    'etc/apt/apt.conf.d',
    'etc/apt/preferences.d',
    'etc/apt/sources.list.d',
    'etc/apt/trusted.gpg.d',
  ];
  for (const d of dirs) await mkdir(join(dir, d), { recursive: true });
  await writeFile(join(dir, 'var/lib/dpkg/status'), '');
  await writeFile(join(dir, 'var/lib/dpkg/available'), '');
  await writeFile(join(dir, 'etc/apt/sources.list'), `${repo.sourcesLine}\n`);
  await chownTree(dir);

  const env: Record<string, string> = { HOME: home };
  const driverOptions: AptDriverOptions = {
    root: dir,
    commandPrefix: UNPRIVILEGED_PREFIX,
    dpkgOptions: DPKG_TEST_OPTIONS,
    aptOptions: [
      '-o',
      `Dir=${dir}`,
      '-o',
      `Dir::State::status=${dir}/var/lib/dpkg/status`,
      // apt believes it is root under fakeroot and would switch to _apt for downloads.
      '-o',
      'APT::Sandbox::User=root',
      '-o',
      'Acquire::Languages=none',
    ],
    stagingDir: join(dir, 'var/cache/fleetpatch'),
    env,
    lockTimeoutMs: 1_000,
    commandTimeoutMs: 30_000,
  };
  const fullEnv = { PATH: TEST_PATH, LC_ALL: 'C', DEBIAN_FRONTEND: 'noninteractive', ...env };
  const dpkg = ['dpkg', `--root=${dir}`, `--log=${dir}/var/log/dpkg.log`, ...DPKG_TEST_OPTIONS];

  const run: DpkgRoot['run'] = (argv) =>
    new Promise((resolve) => {
      execFile(
        UNPRIVILEGED_PREFIX[0] ?? 'fakeroot',
        [...UNPRIVILEGED_PREFIX.slice(1), ...argv],
        { env: fullEnv, maxBuffer: 16 * 1024 * 1024 },
        (err, stdout, stderr) => {
          const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });

  const host: DpkgRoot = {
    root: dir,
    driverOptions,
    run,
    async install(deb) {
      const result = await run([...dpkg, '--force-confdef', '--force-confold', '--install', deb]);
      if (result.code !== 0) throw new Error(`dpkg --install ${deb} failed: ${result.stderr}`);
    },
    startInstall(deb) {
      return spawn(
        UNPRIVILEGED_PREFIX[0] ?? 'fakeroot',
        [...UNPRIVILEGED_PREFIX.slice(1), ...dpkg, '--force-confdef', '--force-confold', '--install', deb],
        { env: fullEnv, stdio: 'ignore' },
      );
    },
    async query(name) {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax
      const format = '-f=${db:Status-Abbrev}\\t${Version}\\n';
      const result = await run(['dpkg-query', `--root=${dir}`, '-W', format, name]);
      if (result.code !== 0) return undefined;
      const [status = '', version = ''] = result.stdout.trim().split('\t');
      return { status: status.trim(), version };
    },
    async audit() {
      return (await run([...dpkg, '--audit'])).stdout.trim();
    },
    path: (relative) => join(dir, relative),
    async writeFile(relative, content) {
      const target = join(dir, relative);
      await mkdir(dirname(target), { recursive: true });
      await writeFile(target, content);
      if (isRoot) await chown(target, UNPRIVILEGED_ID, UNPRIVILEGED_ID);
    },
  };
  const update = await run(['apt-get', ...(driverOptions.aptOptions ?? []), '-q', 'update']);
  if (update.code !== 0) throw new Error(`apt-get update in ${dir} failed: ${update.stderr}`);
  return host;
}

/** The standard test packages; see `createDebTestBed`. */
export function standardDebSpecs(): DebSpec[] {
  const fptest = (version: string, extra: Partial<DebSpec> = {}): DebSpec => ({
    name: 'fptest',
    version,
    files: { '/usr/share/fptest/VERSION': `${version}\n` },
    conffiles: { '/etc/fptest/fptest.conf': `# shipped by fptest ${version}\nsetting=default\n` },
    postinst: failWhenMarkerScript('fptest-fail-postinst'),
    ...extra,
  });
  return [
    fptest('1.0'),
    fptest('2.0'),
    // Waits in its preinst until released: a dpkg that can be killed mid-install.
    fptest('2.5', { preinst: waitForReleaseScript('fptest') }),
    fptest('4.0', { depends: 'fp-missing (>= 1)' }),
    fptest('5.0', { conflicts: 'fpother' }),
    { name: 'fpother', version: '1.0', files: { '/usr/share/fpother/README': 'other\n' } },
    {
      name: 'fpnew',
      version: '1.0',
      files: { '/usr/share/fpnew/VERSION': '1.0\n' },
      conffiles: { '/etc/fpnew.conf': 'new=1\n' },
    },
    // Holds the dpkg lock for as long as a test wants.
    { name: 'fplock', version: '1.0', preinst: waitForReleaseScript('fplock') },
  ];
}

export interface DebTestBed {
  baseDir: string;
  repo: AptRepository;
  /** Path of a built standard package. */
  deb(name: string, version: string): string;
  /** A fresh, empty dpkg root (with apt indexes) inside the bed. */
  newRoot(label?: string): Promise<DpkgRoot>;
  dispose(): Promise<void>;
}

/**
 * Builds `standardDebSpecs()` (plus `extraSpecs`) once into a repository under a temp dir (in
 * `parent`) owned by the unprivileged user. About a second on two cores; each `newRoot` costs one `apt-get update`.
 *
 * - fptest 1.0, 2.0: conffile /etc/fptest/fptest.conf; postinst fails while `$DPKG_ROOT/fptest-fail-postinst` exists
 * - fptest 2.5: preinst waits (see `waitForReleaseScript('fptest')`)
 * - fptest 4.0: Depends on a package that does not exist; fptest 5.0: Conflicts with fpother
 * - fpother 1.0; fpnew 1.0 (conffile /etc/fpnew.conf); fplock 1.0 (preinst waits, tag `fplock`)
 */
export async function createDebTestBed(
  extraSpecs: readonly DebSpec[] = [],
  { parent = tmpdir() }: { parent?: string } = {},
): Promise<DebTestBed> {
  const baseDir = await mkdtemp(join(parent, 'fleetpatch-deb-'));
  await chmod(baseDir, 0o755);
  const repoDir = join(baseDir, 'repo');
  await mkdir(repoDir);
  const specs = [...standardDebSpecs(), ...extraSpecs];
  const debs = await Promise.all(specs.map((spec) => buildDeb(spec, repoDir)));
  const repo = await createAptRepository(repoDir, debs);
  const home = join(baseDir, 'home');
  await mkdir(home);
  await chownTree(baseDir);
  let roots = 0;
  return {
    baseDir,
    repo,
    deb(name, version) {
      const spec = specs.find((s) => s.name === name && s.version === version);
      if (!spec) throw new Error(`no test package ${name} ${version}`);
      return join(repoDir, `${name}_${version.replaceAll(':', '%3a')}_${spec.architecture ?? 'all'}.deb`);
    },
    newRoot(label = 'host') {
      roots += 1;
      return createDpkgRoot(join(baseDir, `${label}-${roots}`), repo, home);
    },
    dispose: () => rm(baseDir, { recursive: true, force: true }),
  };
}

/** Polls `check` until it returns a value or `timeoutMs` passes; for conditions with no event. */
export async function waitFor<T>(
  check: () => Promise<T | undefined> | T | undefined,
  what: string,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** The content of a file, or undefined while it does not exist. */
export async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

async function chownTree(path: string): Promise<void> {
  if (!isRoot) return;
  await execFileAsync('chown', ['-R', `${UNPRIVILEGED_ID}:${UNPRIVILEGED_ID}`, path]);
}
