import { api, seg } from './api.js';
import { age, rolloutGroup } from './format.js';
import { patchSummaryOf } from './patches.js';
import { ProgressBar } from './progress-bar.js';
import { usePolling } from './use-polling.js';
import { html } from './vendor/preact-htm.mjs';

/**
 * The latest 50 rollouts, newest first, each with its patch's title and its hosts by state: one
 * summary call per rollout (the list carries no counts), every poll, since a host reverted alone
 * changes counts without changing its rollout's record. The summary is ~1 KB whatever the fleet's
 * size; the full status lists every host (~2 MB at 10,000).
 */
async function loadRollouts() {
  const { rollouts } = await api('/v1/rollouts?limit=50');
  return Promise.all(
    rollouts.map(async (rollout) => {
      const [status, patch] = await Promise.all([
        api(`/v1/rollouts/${seg(rollout.id)}/summary`),
        patchSummaryOf(rollout.patchId),
      ]);
      return { ...status, title: patch.title };
    }),
  );
}

export function RolloutsPage() {
  const { data, error } = usePolling(loadRollouts, 5000);
  const now = Date.now();
  return html`
    <section>
      <h1>Rollouts</h1>
      ${error && html`<p class="error" role="alert">${error.message}</p>`}
      ${!data && !error && html`<p class="muted">Loading…</p>`}
      ${data?.length === 0 && html`<p class="muted">No rollouts yet.</p>`}
      ${
        data?.length > 0 &&
        html`
          <table class="rollouts">
            <thead>
              <tr><th>Rollout</th><th>State</th><th>Patch</th><th>Progress</th><th>Failures</th><th>Age</th></tr>
            </thead>
            <tbody>
              ${data.map(
                (status) => html`
                  <tr data-rollout=${status.rollout.id}>
                    <td><a href=${`#/rollouts/${seg(status.rollout.id)}`}>${status.rollout.id}</a></td>
                    <td><span class=${`badge group-${rolloutGroup(status.rollout.state)}`}>${status.rollout.state}</span></td>
                    <td class="title">${status.title}</td>
                    <td><${ProgressBar} counts=${status.counts} /></td>
                    <td class=${status.failures > 0 ? 'bad' : ''}>${status.failures} / ${status.toleratedFailures} tolerated</td>
                    <td title=${status.rollout.createdAt}>${age(status.rollout.createdAt, now)}</td>
                  </tr>
                `,
              )}
            </tbody>
          </table>
        `
      }
    </section>
  `;
}
