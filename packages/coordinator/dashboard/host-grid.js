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

/** The hosts that failed, each with its error code, reason and what its checks saw; `more` not named. */
export function FailedHosts({ hosts, more = 0, rolloutId }) {
  if (hosts.length === 0 && more === 0) return null;
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
      ${more > 0 && html`<p class="muted" data-testid="more-failed">… and ${more} more: <code>fleetpatch rollout hosts ${rolloutId} --state failed</code> lists them all</p>`}
    </section>
  `;
}

/** Hosts still verifying or baking with health results so far: what their checks see now. */
export function LiveHealth({ hosts }) {
  const watched = hosts.filter((host) => healthResultsOf(host).length > 0);
  if (watched.length === 0) return null;
  return html`
    <section>
      <h2>Health checks</h2>
      <ul>
        ${watched.map((host) => html`<li><strong>${host.hostId}</strong> <${HealthResults} host=${host} /></li>`)}
      </ul>
    </section>
  `;
}
