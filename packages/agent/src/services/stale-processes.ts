import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MAX_STALE_FILES, MAX_STALE_PATH_CHARS, type StaleProcess } from '@fleetpatch/shared';

const DELETED = ' (deleted)';
/** Shared objects and executables: what a package upgrade replaces under a running process. */
const CODE_PATH = /\.so(?:\.[0-9][0-9.]*)?$|^\/(?:usr\/)?(?:s?bin|lib(?:32|64|x32)?|libexec)\//;
/** Deleted mappings that are not files a package shipped (anonymous shared memory, memfd). */
const NOT_A_PACKAGE_FILE = /^\/(?:memfd:|dev\/shm\/|SYSV|dev\/zero|run\/|tmp\/\.)/;

/**
 * Processes that still map a code file that was deleted or replaced — what dpkg leaves behind when
 * it upgrades a library (it renames the new file over the old, whose inode lives on in every
 * process that mapped it). Read from `<procDir>/<pid>/maps`; the unit comes from the process's
 * cgroup. Processes that vanish while being read, or that cannot be read, are passed over.
 */
export async function findStaleProcesses(procDir: string): Promise<StaleProcess[]> {
  const pids = (await readdir(procDir)).filter((name) => /^[0-9]+$/.test(name));
  const found: StaleProcess[] = [];
  for (const pid of pids) {
    const maps = await readFile(join(procDir, pid, 'maps'), 'utf8').catch(() => '');
    const files = staleFilesOf(maps);
    if (files.length === 0) continue;
    const [comm, cgroup] = await Promise.all([
      readFile(join(procDir, pid, 'comm'), 'utf8').catch(() => ''),
      readFile(join(procDir, pid, 'cgroup'), 'utf8').catch(() => ''),
    ]);
    const unit = unitOfCgroup(cgroup)?.slice(0, 256) ?? null;
    found.push({ pid: Number(pid), command: comm.trim().slice(0, 256), unit, files });
  }
  return found.sort((a, b) => a.pid - b.pid);
}

/** The deleted code files one maps file names, each once, at most MAX_STALE_FILES (paths cut to fit the wire). */
export function staleFilesOf(maps: string): string[] {
  const files = new Set<string>();
  for (const line of maps.split('\n')) {
    if (!line.endsWith(DELETED)) continue;
    // address perms offset dev inode path: the path starts at the sixth field and may hold spaces.
    const path = line.split(/\s+/).slice(5).join(' ').slice(0, -DELETED.length);
    if (path.startsWith('/') && CODE_PATH.test(path) && !NOT_A_PACKAGE_FILE.test(path)) {
      files.add(path.slice(0, MAX_STALE_PATH_CHARS));
    }
  }
  return [...files].slice(0, MAX_STALE_FILES);
}

/**
 * The service a process belongs to, from `/proc/<pid>/cgroup`: the last `*.service` in its systemd
 * path (cgroup v2 `0::/system.slice/nginx.service`, or v1 `name=systemd:/…`); null outside services.
 */
export function unitOfCgroup(cgroup: string): string | null {
  for (const line of cgroup.split('\n')) {
    // hierarchy-id:controllers:path — the path may itself hold colons.
    const first = line.indexOf(':');
    const second = line.indexOf(':', first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    if (controllers !== '' && controllers !== 'name=systemd') continue;
    const unit = line
      .slice(second + 1)
      .split('/')
      .filter((part) => part.endsWith('.service'))
      .at(-1);
    if (unit) return unit;
  }
  return null;
}

/** `needrestart -b` (batch mode): the services it says still run old code (`NEEDRESTART-SVC: unit`). */
export function parseNeedrestartBatch(stdout: string): string[] {
  const units = new Set<string>();
  for (const line of stdout.split('\n')) {
    const match = /^NEEDRESTART-SVC:\s*(\S+)\s*$/.exec(line);
    if (match?.[1]) units.add(match[1]);
  }
  return [...units];
}
