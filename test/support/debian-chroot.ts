/**
 * A throwaway Debian system for the production-path test: `debootstrap --variant=minbase` once,
 * cached as a tarball, then a fresh copy of it per run in a temp dir, where commands run as root
 * with `chroot` — dpkg's root is that system's `/`, as on a real server.
 *
 * Every command, the agent included, goes through `enter`: `unshare --mount` gives it a mount
 * namespace of its own, where /proc, this machine's node binary and the repository (both
 * read-only) are mounted into the copy. Those mounts exist only in that namespace and die with its
 * last process, so a failed or killed test cannot leak a mount under /tmp; `dispose` still checks
 * /proc/self/mountinfo and refuses to delete a tree that has a mount in it.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rename, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { missingTools } from '../../packages/agent/test/support/deb-fixtures.js';

const execFileAsync = promisify(execFile);

export const SUITE = 'bookworm';
export const VARIANT = 'minbase';

/** The repository, mounted at the same path inside the chroot so the agent's own paths hold there. */
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The node binary the agent runs with: this machine's, mounted at the same path inside. */
const NODE = process.execPath;

/** What commands inside see: a root shell's minimal environment, nothing of this machine's. */
const CHROOT_ENV = {
  PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  HOME: '/root',
  LC_ALL: 'C',
  DEBIAN_FRONTEND: 'noninteractive',
};

/**
 * Run by `sh -c` in the new mount namespace: $1 the chroot, $2 the node binary (real path), then the
 * command. Mount propagation is private there (unshare's default), so none of this reaches the host.
 */
const ENTER_SCRIPT = `set -eu
root=$1 node=$2; shift 2
mount --bind -o ro "$node" "$root${NODE}"
mount --bind -o ro "${REPO}" "$root${REPO}"
mount -t proc proc "$root/proc"
# Names a file of this machine's that the chroot does not have: node would warn on every start.
unset NODE_EXTRA_CA_CERTS
exec chroot "$root" "$@"`;

export type ChrootAvailability =
  | { available: true; tarball: string; cached: boolean; mirror: string }
  | { available: false; reason: string };

/** The cached tarball of the base system: `${XDG_CACHE_HOME:-~/.cache}/fleetpatch/debootstrap-<suite>-<variant>-<arch>.tar`. */
function tarballPath(arch: string): string {
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'fleetpatch', `debootstrap-${SUITE}-${VARIANT}-${arch}.tar`);
}

/**
 * The Debian mirror this machine's apt uses for `SUITE` (FLEETPATCH_DEBIAN_MIRROR overrides it):
 * a mirror or proxy the machine is set up to reach. deb.debian.org when none is found.
 */
export function debianMirror(): string {
  const override = process.env.FLEETPATCH_DEBIAN_MIRROR;
  if (override) return override;
  const files = ['/etc/apt/sources.list'];
  try {
    for (const name of readdirSync('/etc/apt/sources.list.d').sort()) {
      if (name.endsWith('.list') || name.endsWith('.sources')) files.push(join('/etc/apt/sources.list.d', name));
    }
  } catch {
    // no sources.list.d: the main file only
  }
  for (const file of files) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    // One-line style: `deb [options] URI SUITE components…`.
    for (const line of text.split('\n')) {
      const match = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line.trim());
      if (match?.[1] && match[2] === SUITE) return match[1];
    }
    // deb822 style: a `Types: deb` stanza with `URIs:` and `Suites:` naming SUITE.
    for (const stanza of text.split(/\n\s*\n/)) {
      const field = (name: string) =>
        new RegExp(`^${name}:\\s*(.+)$`, 'm').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
      const uri = field('URIs')[0];
      if (uri && field('Types').includes('deb') && field('Suites').includes(SUITE)) return uri;
    }
  }
  return 'http://deb.debian.org/debian';
}

/**
 * Whether the chroot test can run here: root, `chroot`, `unshare --mount`, and either the cached
 * base system or debootstrap with the mirror reachable to build it.
 */
export async function debianChrootAvailable(): Promise<ChrootAvailability> {
  if (process.platform !== 'linux') return { available: false, reason: 'a Debian chroot needs Linux' };
  if (process.getuid?.() !== 0) return { available: false, reason: 'chroot and mount need root' };
  const missing = missingTools(['chroot', 'unshare', 'mount', 'tar', 'dpkg', 'dpkg-deb', 'dpkg-scanpackages']);
  if (missing.length > 0) return { available: false, reason: `missing ${missing.join(', ')}` };
  if (spawnSync('unshare', ['--mount', 'true'], { stdio: 'ignore' }).status !== 0) {
    return { available: false, reason: '`unshare --mount` is not permitted here (no CAP_SYS_ADMIN?)' };
  }
  const arch = spawnSync('dpkg', ['--print-architecture'], { encoding: 'utf8' }).stdout.trim();
  const tarball = tarballPath(arch);
  const mirror = debianMirror();
  if (existsSync(tarball)) return { available: true, tarball, cached: true, mirror };
  if (missingTools(['debootstrap']).length > 0) {
    return {
      available: false,
      reason: `no cached ${tarball} and debootstrap is missing (apt-get install debootstrap)`,
    };
  }
  const release = `${mirror}/dists/${SUITE}/Release`;
  try {
    const res = await fetch(release, { method: 'HEAD', signal: AbortSignal.timeout(10_000) });
    if (!res.ok) return { available: false, reason: `Debian mirror answers ${res.status} for ${release}` };
  } catch (err) {
    return { available: false, reason: `Debian mirror unreachable (${release}): ${(err as Error).message}` };
  }
  return { available: true, tarball, cached: false, mirror };
}

/**
 * Builds the cached tarball with debootstrap unless it exists. The build happens in a temp dir
 * beside the cache and is renamed into place whole, so a killed build leaves no half tarball.
 */
export async function ensureBaseTarball(tarball: string, mirror: string): Promise<{ built: boolean; ms: number }> {
  const started = Date.now();
  if (existsSync(tarball)) return { built: false, ms: 0 };
  await mkdir(dirname(tarball), { recursive: true });
  const build = await mkdtemp(join(dirname(tarball), 'build-'));
  try {
    const target = join(build, 'root');
    // In its own mount namespace: the /proc and /sys debootstrap mounts in the target die with it.
    await execFileAsync('unshare', ['--mount', '--', 'debootstrap', `--variant=${VARIANT}`, SUITE, target, mirror], {
      env: { ...process.env, ...CHROOT_ENV },
      maxBuffer: 64 * 1024 * 1024,
      timeout: 30 * 60_000,
    }).catch(async (err: Error & { stderr?: string }) => {
      const log = await readFile(join(target, 'debootstrap/debootstrap.log'), 'utf8').catch(() => '');
      throw new Error(`debootstrap failed: ${err.message}\n${err.stderr ?? ''}\n${log.slice(-4000)}`);
    });
    // The .debs debootstrap installed from: tens of MB the tarball does not need.
    const archives = join(target, 'var/cache/apt/archives');
    for (const name of await readdir(archives)) if (name.endsWith('.deb')) await rm(join(archives, name));
    await execFileAsync('tar', ['-C', target, '--numeric-owner', '-cf', join(build, 'base.tar'), '.']);
    await rename(join(build, 'base.tar'), tarball);
  } finally {
    await removeTree(build);
  }
  return { built: true, ms: Date.now() - started };
}

export interface ChrootRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

export class DebianChroot {
  private constructor(readonly dir: string) {}

  /** A fresh copy of the base system in a new temp dir, with the mount points `enter` needs. */
  static async extract(tarball: string): Promise<DebianChroot> {
    const dir = await mkdtemp(join(tmpdir(), 'fleetpatch-chroot-'));
    const chroot = new DebianChroot(dir);
    try {
      // mkdtemp makes 0700; as the system's `/` it must be 0755, or apt's _apt user can reach nothing.
      await chmod(dir, 0o755);
      await execFileAsync('tar', ['-C', dir, '--numeric-owner', '-xf', tarball]);
      // Created from inside, so every link on the way resolves within the copy; then checked from
      // outside, where `mount` will resolve them: a link leading out of the copy would mount over this machine.
      await chroot.runChecked(['mkdir', '-p', REPO, dirname(NODE)], { plain: true });
      await chroot.runChecked(['touch', NODE], { plain: true });
      for (const target of [REPO, NODE]) {
        const resolved = realpathSync(join(dir, target));
        if (!resolved.startsWith(`${dir}/`)) throw new Error(`mount point ${target} resolves outside the chroot`);
      }
    } catch (err) {
      await chroot.dispose();
      throw err;
    }
    return chroot;
  }

  /**
   * The prefix that runs a command (its path as seen inside) as root in this chroot, in a mount
   * namespace of its own with /proc, node and the repository mounted. Give it to `spawnAgent({ wrap })`.
   */
  get enter(): string[] {
    return ['unshare', '--mount', '--', 'sh', '-c', ENTER_SCRIPT, 'enter-chroot', this.dir, realpathSync(NODE)];
  }

  /**
   * Runs `argv` inside, through `enter` (or with a bare `chroot` when `plain`), with a root shell's
   * minimal environment; `input` goes to its stdin. Kills it after `timeoutMs`.
   */
  run(
    argv: readonly string[],
    { input, plain = false, timeoutMs = 5 * 60_000 }: { input?: string; plain?: boolean; timeoutMs?: number } = {},
  ): Promise<ChrootRun> {
    const [command = 'chroot', ...args] = plain ? ['chroot', this.dir, ...argv] : [...this.enter, ...argv];
    return new Promise((resolve, reject) => {
      const child = spawn(command, args, { env: CHROOT_ENV, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString();
      });
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
      child.once('error', reject);
      child.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout, stderr });
      });
      // A command may exit before reading its input (EPIPE on our write); its exit code is what we judge.
      child.stdin.on('error', () => {});
      child.stdin.end(input ?? '');
    });
  }

  /** `run`, throwing with its output unless it exits 0; answers its stdout. */
  async runChecked(argv: readonly string[], options: { input?: string; plain?: boolean } = {}): Promise<string> {
    const result = await this.run(argv, options);
    if (result.code !== 0) {
      throw new Error(`in the chroot, ${argv.join(' ')} exited ${result.code}:\n${result.stdout}\n${result.stderr}`);
    }
    return result.stdout;
  }

  /** Writes `content` to `path` as seen inside (root-owned, 0644), creating its directory. */
  async writeFile(path: string, content: string): Promise<void> {
    await this.runChecked(['sh', '-c', 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"', 'write-file', path], {
      input: content,
      plain: true,
    });
  }

  /** The content of `path` as seen inside. */
  readFile(path: string): Promise<string> {
    return this.runChecked(['cat', '--', path], { plain: true });
  }

  /** Deletes the copy, unless a mount is still under it (then it throws and deletes nothing). */
  dispose(): Promise<void> {
    return removeTree(this.dir);
  }
}

/** `rm -rf dir`, refused while /proc/self/mountinfo shows a mount at or under it. */
async function removeTree(dir: string): Promise<void> {
  const mounts = (await readFile('/proc/self/mountinfo', 'utf8'))
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter((point): point is string => point !== undefined)
    .map((point) =>
      point.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8))),
    )
    .filter((point) => point === dir || point.startsWith(`${dir}/`));
  if (mounts.length > 0) {
    throw new Error(`not deleting ${dir}: still mounted under it: ${mounts.join(', ')} (umount -l them, then delete)`);
  }
  await rm(dir, { recursive: true, force: true });
}
