/**
 * Paths whose content hands out root, or decides who gets it: a file written there runs as root
 * (cron, systemd units, udev rules, apt hooks, login scripts), loads into every process
 * (ld.so.preload), grants privileges (sudoers, PAM, polkit), or lets someone log in (sshd, root's
 * keys, the account databases). Whatever the allowed roots say, a file change or a file check under
 * one of them is refused unless its exact path is listed in `file.allowedSensitivePaths`.
 *
 * `exact`: that path only. `tree`: the path and everything under it. `prefix`: any path that starts
 * with it (`/etc/cron` covers `/etc/crontab`, `/etc/cron.d/…`, `/etc/cron.daily/…`).
 */
export const SENSITIVE_PATHS: readonly SensitivePath[] = [
  // From the issue.
  { tree: '/etc/sudoers' },
  { tree: '/etc/sudoers.d' },
  { prefix: '/etc/cron' },
  { prefix: '/etc/ld.so.' },
  { tree: '/etc/pam.d' },
  { prefix: '/etc/ssh/sshd_config' },
  { tree: '/root' },
  { tree: '/etc/systemd' },
  { tree: '/lib/systemd' },
  { tree: '/usr/lib/systemd' },
  { tree: '/run/systemd' },
  // Judged equivalent: accounts, login environments, and places whose files run as root.
  { exact: '/etc/passwd' },
  { exact: '/etc/shadow' },
  { exact: '/etc/group' },
  { exact: '/etc/gshadow' },
  { exact: '/etc/environment' },
  { exact: '/etc/profile' },
  { tree: '/etc/profile.d' },
  { exact: '/etc/bash.bashrc' },
  { exact: '/etc/sudo.conf' },
  { exact: '/etc/doas.conf' },
  { exact: '/etc/anacrontab' },
  { exact: '/etc/rc.local' },
  { tree: '/etc/init.d' },
  { tree: '/etc/security' },
  { tree: '/etc/polkit-1' },
  { tree: '/etc/apt' },
  { tree: '/etc/dpkg' },
  { tree: '/etc/udev' },
  { tree: '/etc/modprobe.d' },
  { tree: '/etc/modules-load.d' },
  { tree: '/etc/update-motd.d' },
  { tree: '/etc/logrotate.d' },
  { tree: '/var/spool/cron' },
  // The agent's own configuration: a patch must not rewrite the policy that confines it.
  { tree: '/etc/fleetpatch' },
];

export type SensitivePath = { exact: string } | { tree: string } | { prefix: string };

/** The sensitive entry `path` falls under, as text for a refusal; undefined when it is not sensitive. */
export function sensitiveRuleFor(path: string): string | undefined {
  for (const rule of SENSITIVE_PATHS) {
    if ('exact' in rule && path === rule.exact) return rule.exact;
    if ('tree' in rule && (path === rule.tree || path.startsWith(`${rule.tree}/`))) return `${rule.tree}/**`;
    if ('prefix' in rule && path.startsWith(rule.prefix)) return `${rule.prefix}*`;
  }
  return undefined;
}
