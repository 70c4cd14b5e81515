import { api } from './api.js';
import { age, clockTime } from './format.js';
import { usePolling } from './use-polling.js';
import { html } from './vendor/preact-htm.mjs';

const loadAgents = () => api('/v1/agents');

function Labels({ labels }) {
  const entries = Object.entries(labels ?? {});
  if (entries.length === 0) return html`<span class="muted">none</span>`;
  return entries.map(([key, value]) => html`<span class="label">${key}=${value}</span> `);
}

function Facts({ facts }) {
  if (!facts) return html`<span class="muted">not reported</span>`;
  const memory = `${(facts.memoryBytes / 2 ** 30).toFixed(1)} GiB`;
  return html`<span title=${`kernel ${facts.kernel}`}>${facts.hostname} · ${facts.distro} ${facts.release} · ${facts.arch} · ${facts.cpus} CPU · ${memory}</span>`;
}

/** Every registered agent: online or not, what it runs on, its labels, when it was last heard from. */
export function AgentsPage() {
  const { data, error } = usePolling(loadAgents, 5000);
  const now = Date.now();
  const agents = data?.agents;
  return html`
    <section>
      <h1>Agents ${agents && html`<span class="muted">${agents.filter((a) => a.online).length} of ${agents.length} online</span>`}</h1>
      ${error && html`<p class="error" role="alert">${error.message}</p>`}
      ${!data && !error && html`<p class="muted">Loading…</p>`}
      ${
        agents &&
        html`
          <table class="agents">
            <thead><tr><th>Host</th><th>Online</th><th>Facts</th><th>Labels</th><th>Reported labels</th><th>Version</th><th>Last seen</th></tr></thead>
            <tbody>
              ${agents.map(
                (agent) => html`
                  <tr data-agent=${agent.id}>
                    <td>${agent.id}</td>
                    <td>${
                      agent.revokedAt
                        ? html`<span class="badge group-failed">revoked</span>`
                        : html`<span class=${`badge ${agent.online ? 'group-done' : 'group-pending'}`}>${agent.online ? 'online' : 'offline'}</span>`
                    }</td>
                    <td><${Facts} facts=${agent.facts} /></td>
                    <td><${Labels} labels=${agent.labels} /></td>
                    <td><${Labels} labels=${agent.reportedLabels} /></td>
                    <td>${agent.agentVersion ?? '—'}</td>
                    <td title=${clockTime(agent.lastSeenAt)}>${agent.lastSeenAt ? `${age(agent.lastSeenAt, now)} ago` : 'never'}</td>
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
