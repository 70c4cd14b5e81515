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
  // Run as root by the agent's own package changes: needrestart evals its configuration (Perl) and
  // runs its hook scripts after every apply and revert; kernel and initramfs hooks, grub's scripts
  // and ca-certificates' update hooks run from maintainer scripts. Files dpkg and apt read as root:
  // maintainer scripts, the package cache a revert's prior .deb comes from, debconf's answers.
  { tree: '/etc/needrestart' },
  { tree: '/etc/kernel' },
  { tree: '/etc/initramfs-tools' },
  { tree: '/etc/grub.d' },
  { tree: '/etc/default' },
  { tree: '/etc/ca-certificates' },
  { exact: '/etc/ca-certificates.conf' },
  { exact: '/etc/ssl/certs/ca-certificates.crt' },
  { tree: '/usr/local/share/ca-certificates' },
  { exact: '/etc/logrotate.conf' },
  { tree: '/var/lib/dpkg' },
  { tree: '/var/lib/apt' },
  { tree: '/var/cache/apt' },
  { tree: '/var/cache/debconf' },
  // Programs, libraries and interpreter modules that root runs or loads (the agent runs dpkg and
  // apt by name: a program planted in /usr/local/sbin would be found).
  { tree: '/bin' },
  { tree: '/sbin' },
  { tree: '/lib' },
  { tree: '/lib32' },
  { tree: '/lib64' },
  { tree: '/libx32' },
  { tree: '/usr/bin' },
  { tree: '/usr/sbin' },
  { tree: '/usr/lib' },
  { tree: '/usr/lib32' },
  { tree: '/usr/lib64' },
  { tree: '/usr/libx32' },
  { tree: '/usr/libexec' },
  { tree: '/usr/share/perl' },
  { tree: '/usr/share/perl5' },
  { prefix: '/usr/share/python' },
  { tree: '/usr/local/bin' },
  { tree: '/usr/local/sbin' },
  { tree: '/usr/local/lib' },
  { tree: '/usr/local/share/perl' },
  { tree: '/etc/perl' },
  { prefix: '/etc/python' },
  { tree: '/boot' },
  // Run as root at boot or on an event: kernel settings (a core_pattern pipe), binary formats,
  // tmpfiles (which create any file or link), mounts, NFS exports, network and power hooks.
  { exact: '/etc/sysctl.conf' },
  { tree: '/etc/sysctl.d' },
  { tree: '/etc/binfmt.d' },
  { tree: '/etc/tmpfiles.d' },
  { exact: '/etc/fstab' },
  { exact: '/etc/crypttab' },
  { exact: '/etc/exports' },
  { tree: '/etc/exports.d' },
  { tree: '/etc/network' },
  { tree: '/etc/NetworkManager/dispatcher.d' },
  { tree: '/etc/dhcp' },
  { tree: '/etc/ppp' },
  { tree: '/etc/acpi' },
  { tree: '/etc/pm' },
  { prefix: '/etc/rc' },
  { tree: '/etc/init' },
  { tree: '/etc/selinux' },
  { tree: '/var/lib/polkit-1' },
  // Read by root's own shells and tools: completion scripts, zsh's startup files, ssh's client
  // configuration (a ProxyCommand), git's system configuration (hooks, fsmonitor).
  { prefix: '/etc/bash' },
  { tree: '/etc/zsh' },
  { prefix: '/etc/ssh/ssh_config' },
  { exact: '/etc/gitconfig' },
  // The agent's own configuration: a patch must not rewrite the policy that confines it (its data
  // and staging directories, wherever they are configured, are refused by the policy itself).
  { tree: '/etc/fleetpatch' },
  { tree: '/var/lib/fleetpatch-agent' },
  { tree: '/var/cache/fleetpatch' },
];

export type SensitivePath = { exact: string } | { tree: string } | { prefix: string };

/**
 * Each rule in one shape, in the same order, its strings made once: a path is `exact` or starts with
 * `under`. Asked of every path of every order, the rules of three shapes (and a `tree/` string made
 * for each tree rule at each ask) cost more than all the comparisons.
 */
const MATCHERS: readonly { exact: string | undefined; under: string | undefined; text: string }[] = SENSITIVE_PATHS.map(
  (rule) => {
    if ('exact' in rule) return { exact: rule.exact, under: undefined, text: rule.exact };
    if ('tree' in rule) return { exact: rule.tree, under: `${rule.tree}/`, text: `${rule.tree}/**` };
    return { exact: undefined, under: rule.prefix, text: `${rule.prefix}*` };
  },
);

/** The sensitive entry `path` falls under, as text for a refusal; undefined when it is not sensitive. */
export function sensitiveRuleFor(path: string): string | undefined {
  for (const rule of MATCHERS) {
    if (path === rule.exact || (rule.under !== undefined && path.startsWith(rule.under))) return rule.text;
  }
  return undefined;
}
