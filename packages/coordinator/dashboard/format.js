// How the dashboard groups host and rollout states, and writes times. Pure functions, no DOM.

/** Each host state's group: what colour its cell gets and which part of a wave's bar it counts in. */
const HOST_GROUPS = {
  queued: 'pending',
  dispatched: 'in-flight',
  delivered: 'in-flight',
  snapshotted: 'in-flight',
  applying: 'in-flight',
  verifying: 'in-flight',
  reverting: 'in-flight',
  healthy: 'done',
  not_applicable: 'done',
  reverted: 'reverted',
  skipped: 'skipped',
  cancelled: 'skipped',
  failed: 'failed',
  timed_out: 'failed',
  revert_failed: 'failed',
};

export function hostGroup(state) {
  return HOST_GROUPS[state] ?? 'pending';
}

/** The parts of a wave's (or a rollout's) bar, in the order they are drawn. */
export const BAR_GROUPS = ['done', 'reverted', 'failed', 'skipped', 'in-flight', 'pending'];

/** Hosts per group, from `{ state: count }` or a list of hosts. */
export function groupCounts(hostsOrCounts) {
  const counts = Object.fromEntries(BAR_GROUPS.map((group) => [group, 0]));
  if (Array.isArray(hostsOrCounts)) {
    for (const host of hostsOrCounts) counts[hostGroup(host.state)] += 1;
  } else {
    for (const [state, n] of Object.entries(hostsOrCounts ?? {})) counts[hostGroup(state)] += n;
  }
  return counts;
}

const ROLLOUT_GROUPS = {
  running: 'in-flight',
  reverting: 'in-flight',
  paused: 'attention',
  awaiting_approval: 'attention',
  scheduled: 'pending',
  draft: 'pending',
  succeeded: 'done',
  reverted: 'reverted',
  halted: 'failed',
  aborted: 'failed',
  revert_failed: 'failed',
};

export function rolloutGroup(state) {
  return ROLLOUT_GROUPS[state] ?? 'pending';
}

/** "42 s", "5 min", "3 h", "2 d": how long ago `iso` was at `now` (ms). */
export function age(iso, now = Date.now()) {
  if (!iso) return '—';
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 90) return `${seconds} s`;
  const minutes = Math.round(seconds / 60);
  if (minutes < 90) return `${minutes} min`;
  const hours = Math.round(minutes / 60);
  if (hours < 36) return `${hours} h`;
  return `${Math.round(hours / 24)} d`;
}

/** "45 s", "12 min 5 s", "2 h 30 min": a countdown or a duration in seconds. */
export function seconds(total) {
  const s = Math.max(0, Math.round(total));
  if (s < 90) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/** A timestamp as the user's local time, to the second. */
export function clockTime(iso) {
  if (!iso) return '—';
  return new Date(iso).toLocaleString(undefined, { hour12: false });
}

/** Waves are numbered from 1 wherever a person reads them (the API counts from 0). */
export function waveName(index) {
  return `wave ${index + 1}`;
}
