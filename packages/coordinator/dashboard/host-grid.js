import { clockTime, hostGroup } from './format.js';
import { html } from './vendor/preact-htm.mjs';

/** A `{ check, observed, … }` health-check result, as the API writes them. */
function isHealthResult(item) {
  return (
    item !== null && typeof item === 'object' && typeof item.check === 'string' && typeof item.observed === 'string'
  );
}

/**
 * The health-check results a host view carries: `health` (the last verdict), and any other result or
 * list of results the coordinator adds (the live ones while a host verifies or bakes), whatever the
 * field is called.
 */
export function healthResultsOf(host) {
  return Object.entries(host).flatMap(([field, value]) => {
    const results = Array.isArray(value) ? value : [value];
    if (results.length === 0 || !results.every(isHealthResult)) return [];
    return results.map((result) => ({ field, ...result }));
  });
}

function HealthResults({ host }) {
  const results = healthResultsOf(host);
  if (results.length === 0) return null;
  return html`
    <ul class="health">
      ${results.map(
        (r) =>
          html`<li class=${r.ok === false ? 'bad' : 'ok'}>${r.ok === false ? 'failing' : 'ok'} · ${r.check}: ${r.observed}${
            r.since ? ` (since ${clockTime(r.since)})` : r.at ? ` (${clockTime(r.at)})` : ''
          }</li>`,
      )}
    </ul>
  `;
}

/** One cell per host, coloured by its state; the title (hover) says the state and why. */
export function HostGrid({ waves }) {
  return html`
    <div class="grid" data-testid="host-grid">
      ${waves.flatMap((wave) =>
        wave.hosts.map(
          (host) => html`
            <div class=${`host group-${hostGroup(host.state)}`} data-host=${host.hostId} data-state=${host.state}
              title=${`${host.hostId}: ${host.state}${host.reason ? ` — ${host.reason}` : ''}`}>
              <span class="name">${host.hostId}</span>
              <span class="state">${host.state.replaceAll('_', ' ')}</span>
              ${!host.online && html`<span class="offline">offline</span>`}
            </div>
          `,
        ),
      )}
    </div>
  `;
}

/**
 * The hosts that failed, each with its error code, reason and what its checks saw; `more`: those not
 * named (a large rollout's summary names the first 10), as `[state, count]`.
 */
export function FailedHosts({ hosts, more = [], rolloutId }) {
  const unnamed = more.reduce((n, [, count]) => n + count, 0);
  if (hosts.length === 0 && unnamed === 0) return null;
  return html`
    <section class="failed-hosts">
      <h2>Failed hosts</h2>
      <ul>
        ${hosts.map(
          (host) => html`
            <li data-failed-host=${host.hostId}>
              <strong>${host.hostId}</strong> ${host.state}${host.errorCode ? ` (${host.errorCode})` : ''}:${' '}
              <span class="reason">${host.reason ?? 'no reason given'}</span>
              <${HealthResults} host=${host} />
            </li>
          `,
        )}
      </ul>
      ${
        unnamed > 0 &&
        html`<p class="muted" data-testid="more-failed">… and ${unnamed} more: ${more.map(([state, count]) => `${count} ${state}`).join(', ')} (<code>fleetpatch rollout hosts ${rolloutId} --state ${more[0][0]}</code> lists them)</p>`
      }
    </section>
  `;
}

/**
 * Hosts in flight whose latest health poll fails a check: those checks, what they saw, for how many
 * polls, and how many more failing checks a summary left out.
 */
export function LiveHealth({ hosts }) {
  const watched = hosts.filter((host) => healthResultsOf(host).length > 0);
  if (watched.length === 0) return null;
  return html`
    <section>
      <h2>Failing health checks</h2>
      <ul>
        ${watched.map(
          (host) => html`
            <li data-failing-host=${host.hostId}>
              <strong>${host.hostId}</strong> ${host.state}${host.failingPolls > 1 ? ` · ${host.failingPolls} polls in a row` : ''}
              <${HealthResults} host=${host} />
              ${host.moreChecks > 0 && html`<span class="muted">and ${host.moreChecks} more failing checks</span>`}
            </li>
          `,
        )}
      </ul>
    </section>
  `;
}
