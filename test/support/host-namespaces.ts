import { execFileSync, spawnSync } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { type Requirement, requirement } from './requirements.js';

/**
 * Test hosts as Linux network namespaces: each has its own loopback (so every host can run the
 * same service on 127.0.0.1:8080) and a veth link to the test machine. Cutting the link is a real
 * partition. Needs root and iproute2; `namespacesAvailable()` says why not when they are missing.
 */
export function namespacesAvailable(): { available: true } | { available: false; reason: string } {
  if (process.getuid?.() !== 0) return { available: false, reason: 'network namespaces need root' };
  const probe = spawnSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  if (probe.error || probe.status !== 0) return { available: false, reason: 'iproute2 (`ip netns`) is not available' };
  return { available: true };
}

/** What a multi-host test needs: root and `ip netns` (see `namespacesAvailable`). */
export const namespaces: Requirement = requirement('network namespaces', namespacesAvailable());

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

export class HostNamespace {
  private constructor(
    readonly name: string,
    private readonly hostLink: string,
    /** This host's end of its link, inside the namespace (where a qdisc shapes what the host sends). */
    readonly linkInside: string,
    /** The test machine's address on this host's link: where the coordinator is reached. */
    readonly gatewayIp: string,
    readonly hostIp: string,
  ) {}

  /**
   * Creates `count` hosts on distinct /30 links of 10.231.<random>.0/24. The tag and the /24 are
   * drawn among those not already on this machine (another run, or one that died before cleanup),
   * so two sets of hosts never share a route or a link name.
   */
  static createMany(count: number): HostNamespace[] {
    const inUse = [
      execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }),
      execFileSync('ip', ['-o', '-4', 'addr', 'show'], { encoding: 'utf8' }),
      execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }),
    ].join('\n');
    let tag: string;
    do tag = randomInt(0x1000, 0x10000).toString(16);
    while (inUse.includes(`fp${tag}`) || inUse.includes(`fp-${tag}`));
    let subnet: number;
    do subnet = randomInt(1, 254);
    while (inUse.includes(`10.231.${subnet}.`));
    const hosts: HostNamespace[] = [];
    try {
      for (let i = 0; i < count; i++) {
        const name = `fp-${tag}-${i}`;
        const hostLink = `fp${tag}h${i}`;
        const nsLink = `fp${tag}n${i}`;
        const gatewayIp = `10.231.${subnet}.${4 * i + 1}`;
        const hostIp = `10.231.${subnet}.${4 * i + 2}`;
        ip('netns', 'add', name);
        hosts.push(new HostNamespace(name, hostLink, nsLink, gatewayIp, hostIp));
        ip('link', 'add', hostLink, 'type', 'veth', 'peer', 'name', nsLink);
        ip('link', 'set', nsLink, 'netns', name);
        ip('addr', 'add', `${gatewayIp}/30`, 'dev', hostLink);
        ip('link', 'set', hostLink, 'up');
        ip('netns', 'exec', name, 'ip', 'addr', 'add', `${hostIp}/30`, 'dev', nsLink);
        ip('netns', 'exec', name, 'ip', 'link', 'set', nsLink, 'up');
        ip('netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up');
      }
    } catch (err) {
      for (const host of hosts) host.destroy();
      throw err;
    }
    return hosts;
  }

  /** The test machine's end of this host's link (where a qdisc shapes what the host receives). */
  get linkOutside(): string {
    return this.hostLink;
  }

  /** Prefix that runs a command inside this host. */
  get exec(): string[] {
    return ['ip', 'netns', 'exec', this.name];
  }

  /** Cuts this host off from the test machine (and so from the coordinator). */
  partition(): void {
    ip('link', 'set', this.hostLink, 'down');
  }

  heal(): void {
    ip('link', 'set', this.hostLink, 'up');
  }

  /** Removing the namespace removes its end of the link, and so the whole veth pair. */
  destroy(): void {
    spawnSync('ip', ['netns', 'del', this.name], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.hostLink], { stdio: 'ignore' });
  }
}
