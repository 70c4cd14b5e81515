import { execFileSync, spawnSync } from 'node:child_process';
import type { HostNamespace } from './host-namespaces.js';
import type { Requirement } from './requirements.js';

/**
 * Packet-level faults on a namespaced host's link, made by the kernel: `tc netem` (delay, loss,
 * duplication, reordering) where the kernel has sch_netem, and iptables (random drop with the
 * `statistic` match, duplication with the `TEE` target) where it has only netfilter — the VM kernel of
 * this project's CI has no sch_netem. `linkFaultTools()` says which of the two this machine has.
 */
export interface LinkFaultTools {
  netem: boolean;
  iptables: boolean;
}

let probed: LinkFaultTools | undefined;

/** Probes once, in a throwaway namespace: a qdisc kind the kernel lacks fails only when it is added. */
export function linkFaultTools(): LinkFaultTools {
  if (probed) return probed;
  const ns = `fp-probe-${process.pid}`;
  if (spawnSync('ip', ['netns', 'add', ns], { stdio: 'ignore' }).status !== 0) {
    probed = { netem: false, iptables: false };
    return probed;
  }
  try {
    const inNs = (...args: string[]) =>
      spawnSync('ip', ['netns', 'exec', ns, ...args], { stdio: 'ignore' }).status === 0;
    probed = {
      netem: inNs('tc', 'qdisc', 'add', 'dev', 'lo', 'root', 'netem', 'delay', '1ms'),
      iptables: inNs(
        'iptables',
        '-w',
        '-A',
        'INPUT',
        '-m',
        'statistic',
        '--mode',
        'random',
        '--probability',
        '0.5',
        '-j',
        'ACCEPT',
      ),
    };
  } finally {
    spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
  return probed;
}

/** What to do to every packet of a link; each field left out is not applied. */
export interface LinkFault {
  /** Loss probability (0–1) in each direction. */
  loss?: number;
  /** Duplication probability (0–1) in each direction. */
  duplicate?: number;
  /** One-way delay added by netem (needs sch_netem). */
  delayMs?: number;
  /** Share of packets netem sends at once, ahead of the delayed ones (needs sch_netem and a delay). */
  reorder?: number;
}

function inHost(host: HostNamespace, ...args: string[]): void {
  execFileSync(host.exec[0] as string, [...host.exec.slice(1), ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/**
 * Applies `fault` to both directions of `host`'s link, from inside the host (its namespace dies with
 * it, and its rules and qdiscs with it). Returns the names of the faults it applied, for the table.
 * Delay and reordering need netem: without it they are not applied, and not named.
 */
export function applyLinkFault(host: HostNamespace, fault: LinkFault): string[] {
  const tools = linkFaultTools();
  const applied: string[] = [];
  if (tools.netem) {
    const args: string[] = [];
    if (fault.delayMs) args.push('delay', `${fault.delayMs}ms`);
    if (fault.loss) args.push('loss', `${fault.loss * 100}%`);
    if (fault.duplicate) args.push('duplicate', `${fault.duplicate * 100}%`);
    if (fault.reorder && fault.delayMs) args.push('reorder', `${fault.reorder * 100}%`, '50%');
    // netem shapes egress only: the host's side delays what it sends, the machine's side what it receives.
    if (args.length > 0) {
      inHost(host, 'tc', 'qdisc', 'replace', 'dev', host.linkInside, 'root', 'netem', ...args);
      execFileSync('tc', ['qdisc', 'replace', 'dev', host.linkOutside, 'root', 'netem', ...args]);
    }
    if (fault.delayMs) applied.push(`delay ${fault.delayMs} ms`);
    if (fault.loss) applied.push(`loss ${fault.loss * 100} %`);
    if (fault.duplicate) applied.push(`dup ${fault.duplicate * 100} %`);
    if (fault.reorder && fault.delayMs) applied.push(`reorder ${fault.reorder * 100} %`);
    return applied;
  }
  if (!tools.iptables) return applied;
  const random = (p: number) => ['-m', 'statistic', '--mode', 'random', '--probability', String(p)];
  if (fault.loss) {
    inHost(host, 'iptables', '-w', '-A', 'INPUT', ...random(fault.loss), '-j', 'DROP');
    inHost(host, 'iptables', '-w', '-A', 'OUTPUT', '-o', host.linkInside, ...random(fault.loss), '-j', 'DROP');
    applied.push(`loss ${fault.loss * 100} %`);
  }
  if (fault.duplicate) {
    // TEE sends a copy of the packet to the gateway, which is where it was going: the peer gets it twice.
    inHost(
      host,
      'iptables',
      '-w',
      '-t',
      'mangle',
      '-A',
      'OUTPUT',
      '-o',
      host.linkInside,
      ...random(fault.duplicate),
      '-j',
      'TEE',
      '--gateway',
      host.gatewayIp,
    );
    applied.push(`dup ${fault.duplicate * 100} %`);
  }
  return applied;
}

/** Removes every fault `applyLinkFault` put on `host`'s link. */
export function clearLinkFault(host: HostNamespace): void {
  const tools = linkFaultTools();
  if (tools.netem) {
    spawnSync(host.exec[0] as string, [...host.exec.slice(1), 'tc', 'qdisc', 'del', 'dev', host.linkInside, 'root'], {
      stdio: 'ignore',
    });
    spawnSync('tc', ['qdisc', 'del', 'dev', host.linkOutside, 'root'], { stdio: 'ignore' });
  }
  if (tools.iptables) {
    spawnSync(host.exec[0] as string, [...host.exec.slice(1), 'iptables', '-w', '-F'], { stdio: 'ignore' });
    spawnSync(host.exec[0] as string, [...host.exec.slice(1), 'iptables', '-w', '-t', 'mangle', '-F'], {
      stdio: 'ignore',
    });
  }
}

/** Packets the iptables rules of `host` dropped and duplicated so far (0 and 0 under netem, which keeps no such count). */
export function linkFaultCounts(host: HostNamespace): { dropped: number; duplicated: number } {
  if (!linkFaultTools().iptables || linkFaultTools().netem) return { dropped: 0, duplicated: 0 };
  const count = (table: string, target: string) =>
    execFileSync(
      host.exec[0] as string,
      [...host.exec.slice(1), 'iptables', '-w', '-t', table, '-L', '-n', '-v', '-x'],
      {
        encoding: 'utf8',
      },
    )
      .split('\n')
      .filter((line) => line.trim().split(/\s+/)[2] === target)
      .reduce((sum, line) => sum + Number(line.trim().split(/\s+/)[0]), 0);
  return { dropped: count('filter', 'DROP'), duplicated: count('mangle', 'TEE') };
}

/** What a scenario that degrades links needs: netem, or iptables (`.ci/run` installs it). */
export const linkFaults: Requirement = {
  needs: 'tc netem or iptables',
  get missing() {
    const tools = linkFaultTools();
    return tools.netem || tools.iptables ? undefined : 'neither sch_netem nor a working iptables in this kernel';
  },
};
