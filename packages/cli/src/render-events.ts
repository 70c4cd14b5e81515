import type { EventRecord } from '@fleetpatch/shared';

/** One audit event per line: `#12 2025-01-01T00:00:00.000Z alice rollout.started [web-1] scheduled→running {…}`. */
export function renderEvent(event: EventRecord): string {
  const parts = [`#${event.seq}`, event.at, event.actor, event.type];
  if (event.hostId) parts.push(`[${event.hostId}]`);
  if (event.fromState || event.toState) parts.push(`${event.fromState ?? '-'}→${event.toState ?? '-'}`);
  if (event.data && Object.keys(event.data).length > 0) parts.push(JSON.stringify(event.data));
  return parts.join(' ');
}
