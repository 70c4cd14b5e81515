import type { RolloutHostPage } from '@fleetpatch/shared';
import { renderTable } from './render-table.js';

/** One row of `rollout hosts`: a host of the rollout, with its 0-based wave. */
export type RolloutHostRow = RolloutHostPage['hosts'][number];

/**
 * `fleetpatch rollout hosts`: one row per host, in wave order (waves 1-based, as people count them).
 *
 *   HOST    WAVE  STATE    ONLINE  CHANGED  REASON
 *   web-1   1     healthy  yes     yes      -
 *   web-7   3     failed   no      no       health_failed: http check "api" returned 500
 *
 * Cells are the server's text: renderTable escapes them.
 */
export function renderRolloutHosts(hosts: readonly RolloutHostRow[]): string {
  return renderTable(
    ['host', 'wave', 'state', 'online', 'changed', 'reason'],
    hosts.map((host) => [
      host.hostId,
      String(host.wave + 1),
      host.state,
      host.online ? 'yes' : 'no',
      host.changed === 'unknown' ? 'unknown' : host.changed ? 'yes' : 'no',
      [host.errorCode, host.reason].filter((part): part is string => Boolean(part)).join(': ') || '-',
    ]),
  );
}
