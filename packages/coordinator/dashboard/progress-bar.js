import { BAR_GROUPS, groupCounts } from './format.js';
import { html } from './vendor/preact-htm.mjs';

const LABELS = {
  done: 'done',
  reverted: 'reverted',
  failed: 'failed',
  skipped: 'skipped',
  'in-flight': 'in flight',
  pending: 'pending',
};

/** A bar of hosts by group (done / failed / in flight / pending …) with the counts beside it. */
export function ProgressBar({ hosts, counts }) {
  const groups = groupCounts(hosts ?? counts);
  const total = BAR_GROUPS.reduce((sum, group) => sum + groups[group], 0);
  const parts = BAR_GROUPS.filter((group) => groups[group] > 0);
  return html`
    <span class="progress">
      <span class="bar" role="img" aria-label=${parts.map((g) => `${groups[g]} ${LABELS[g]}`).join(', ')}>
        ${parts.map(
          (group) =>
            html`<span class=${`fill group-${group}`} style=${{ width: `${(100 * groups[group]) / total}%` }}></span>`,
        )}
      </span>
      <span class="counts">
        ${total === 0 ? 'no hosts yet' : parts.map((g) => html`<span class=${`count group-${g}`}>${groups[g]} ${LABELS[g]}</span>`)}
      </span>
    </span>
  `;
}
