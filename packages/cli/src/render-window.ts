import type { RolloutStatus } from '@fleetpatch/shared';
import { oneLine } from './terminal-text.js';
import { formatDuration } from './wave-timings.js';

/**
 * A rollout's maintenance window as one line: while waves may start, the time left until the
 * cutoff and the close; otherwise the countdown to the next opening. Undefined without a window.
 */
export function describeWindow(status: Pick<RolloutStatus, 'window'>, now: Date): string | undefined {
  const { window } = status;
  if (!window) return undefined;
  const left = (iso: string) => formatDuration(Math.max(0, Date.parse(iso) - now.getTime()));
  return window.open
    ? oneLine`maintenance window open: new waves for ${left(window.cutoffAt)}, closes in ${left(window.closesAt)}`
    : oneLine`maintenance window opens in ${left(window.opensAt)} (${window.opensAt})`;
}
