/**
 * A real systemd for tests, on a machine whose PID 1 is not systemd: `/lib/systemd/systemd --system`
 * started as PID 1 of new PID, mount, network, UTS and IPC namespaces (`unshare`). Inside its mount
 * namespace `/run` is a fresh tmpfs, the machine's unit directories are hidden (a tmpfs over
 * `/usr/lib/systemd/system`, the test's own directory bound over `/etc/systemd/system`), so it loads
 * only the units the test wrote and starts nothing of this machine's; none of this reaches the host.
 * `systemctl` reaches it through `nsenter` into its namespaces (`systemctlArgv`), which is how an
 * agent under test is configured (`services.systemctl`). SIGKILL of its PID 1 ends the namespace,
 * every unit's process and every mount with it.
 *
 * Units must say `DefaultDependencies=no`: the basic targets (sysinit, basic, shutdown) are hidden.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from '../../scripts/lib/local-fleet.mjs';
import type { Availability } from './requirements.js';

const SYSTEMD = '/lib/systemd/systemd';
const TARGET = 'fleetpatch-test.target';

/** Run by `sh` inside the new namespaces: $1 the unit directory. */
const BOOT_SCRIPT = `set -eu
mount --make-rprivate /
mount -t tmpfs tmpfs /run
mount --bind "$1" /etc/systemd/system
mount -t tmpfs tmpfs /usr/lib/systemd/system
export container=fleetpatch-test
exec ${SYSTEMD} --system --unit=${TARGET} --log-target=console --log-level=info`;

export function namespacedSystemdSupport(): Availability {
  if (process.getuid?.() !== 0) return { available: false, reason: 'not root' };
  for (const tool of [SYSTEMD, '/usr/bin/unshare', '/usr/bin/nsenter', '/usr/bin/systemctl']) {
    if (!existsSync(tool)) return { available: false, reason: `${tool} is missing` };
  }
  return { available: true };
}

export class NamespacedSystemd {
  private constructor(
    readonly dir: string,
    readonly pid: number,
    private readonly child: ChildProcess,
    readonly log: string[],
  ) {}

  /** Boots with the given units (name → unit file text) wanted by its target, and waits until it runs. */
  static async boot(units: Record<string, string>): Promise<NamespacedSystemd> {
    const dir = await mkdtemp(join(tmpdir(), 'fleetpatch-systemd-'));
    const unitDir = join(dir, 'units');
    await mkdir(unitDir);
    for (const [name, text] of Object.entries(units)) await writeFile(join(unitDir, name), text);
    const wants = Object.keys(units).filter((name) => name.endsWith('.service'));
    await writeFile(
      join(unitDir, TARGET),
      `[Unit]\nDescription=fleetpatch test target\nDefaultDependencies=no\nWants=${wants.join(' ')}\n`,
    );
    const child = spawn(
      'unshare',
      ['--pid', '--fork', '--mount', '--net', '--uts', '--ipc', '--mount-proc', 'sh', '-c', BOOT_SCRIPT, 'sh', unitDir],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const log: string[] = [];
    child.stdout?.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    const unsharePid = child.pid;
    if (unsharePid === undefined) throw new Error('unshare did not start');
    // unshare --fork: its one child is PID 1 of the new namespace, exec'd into systemd.
    const pid = await waitFor('the namespace PID 1', () => childOf(unsharePid), { timeoutMs: 10_000 });
    const systemd = new NamespacedSystemd(dir, pid, child, log);
    try {
      await waitFor(
        'systemd to finish starting its target',
        () => ['running', 'degraded'].includes(systemd.systemctlOutput('is-system-running')),
        { timeoutMs: 20_000 },
      );
    } catch (err) {
      await systemd.stop();
      throw new Error(`${(err as Error).message}\n${log.join('')}`);
    }
    return systemd;
  }

  /** How to run systemctl against this systemd: the argv before the verb. */
  get systemctlArgv(): string[] {
    return ['nsenter', '-t', String(this.pid), '-m', '-p', '--', 'systemctl'];
  }

  /** `systemctl show -p MainPID --value unit`, as a number (0: not running). */
  mainPid(unit: string): number {
    return Number(this.systemctlOutput('show', '-p', 'MainPID', '--value', unit));
  }

  systemctlOutput(...args: string[]): string {
    try {
      return execFileSync(this.systemctlArgv[0] as string, [...this.systemctlArgv.slice(1), ...args], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      }).trim();
    } catch (err) {
      return String((err as { stdout?: string }).stdout ?? '').trim();
    }
  }

  /** SIGKILL to its PID 1 ends the namespace and everything in it; then the unit files go. */
  async stop(): Promise<void> {
    const exited = new Promise<void>((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) resolve();
      else this.child.once('exit', () => resolve());
    });
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      // already gone
    }
    await exited;
    await rm(this.dir, { recursive: true, force: true });
  }
}

function childOf(pid: number): number | undefined {
  try {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    const first = Number(children.split(/\s+/)[0]);
    return first > 0 && readFileSync(`/proc/${first}/comm`, 'utf8').trim() === 'systemd' ? first : undefined;
  } catch {
    return undefined;
  }
}
