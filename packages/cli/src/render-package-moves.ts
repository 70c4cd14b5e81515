import type { PackageMove } from '@fleetpatch/shared';
import { oneLine } from './terminal-text.js';

/**
 * A package change as one host resolved it, in one line:
 * `libfpsrc1 1.0-1 → 2.0-1 (apt-cache), fpsrc-bin 1.0-1+b1 → 2.0-1+b1 (dpkg-repack)`.
 * The parenthesis says where the prior version's .deb was kept (`none`: not captured, no revert).
 */
export function formatPackageMoves(moves: readonly PackageMove[]): string {
  return moves
    .map((m) => `${m.name} ${m.from ?? '(not installed)'} → ${m.to}${m.snapshot ? ` (${m.snapshot})` : ''}`)
    .join(', ');
}

/**
 * Hosts grouped by the set they resolved to, so a fleet that moved alike reads as one line:
 * `  packages libfoo 1.0-1 → 2.0-1: web-1, web-2`. At most `shown` hosts are named per set.
 * Package names and versions are what each agent reported: the line is written with oneLine.
 */
export function packageSetLines(
  hosts: readonly { hostId: string; packages?: PackageMove[] | undefined }[],
  shown = 10,
): string[] {
  const bySet = new Map<string, string[]>();
  for (const host of hosts) {
    if (!host.packages || host.packages.length === 0) continue;
    const set = formatPackageMoves(host.packages.map(({ snapshot: _snapshot, ...move }) => move));
    bySet.set(set, [...(bySet.get(set) ?? []), host.hostId]);
  }
  return [...bySet].map(([set, ids]) => {
    const more = ids.length > shown ? `, and ${ids.length - shown} more` : '';
    return oneLine`  packages ${set}: ${ids.slice(0, shown).join(', ')}${more}`;
  });
}
