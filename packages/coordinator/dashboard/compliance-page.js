import { api } from './api.js';
import { age } from './format.js';
import { html, useEffect, useState } from './vendor/preact-htm.mjs';

const STATUS_GROUPS = { fixed: 'done', exposed: 'failed', unknown: 'attention', not_installed: 'skipped' };

/**
 * Which hosts still run a vulnerable version of a source package: the same report as
 * `fleetpatch compliance --source … --fixed …`, for the source and fixed version in the URL.
 */
export function CompliancePage({ query }) {
  const source = query.get('source') ?? '';
  const fixed = query.get('fixed') ?? '';
  const [report, setReport] = useState(null);
  const [error, setError] = useState(null);

  useEffect(() => {
    setReport(null);
    setError(null);
    if (!source || !fixed) return;
    const controller = new AbortController();
    api(`/v1/compliance?${new URLSearchParams({ source, fixed })}`, { signal: controller.signal }).then(
      setReport,
      (err) => !controller.signal.aborted && setError(err.message),
    );
    return () => controller.abort();
  }, [source, fixed]);

  const submit = (event) => {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const params = new URLSearchParams({
      source: form.get('source')?.toString().trim() ?? '',
      fixed: form.get('fixed')?.toString().trim() ?? '',
    });
    location.hash = `#/compliance?${params}`;
  };
  const now = Date.now();
  return html`
    <section>
      <h1>Compliance</h1>
      <form class="inline" onSubmit=${submit}>
        <label>Source package <input name="source" value=${source} placeholder="openssl" required /></label>
        <label>Fixed in <input name="fixed" value=${fixed} placeholder="3.0.15-1~deb12u1" required /></label>
        <button type="submit">Check the fleet</button>
      </form>
      ${error && html`<p class="error" role="alert">${error}</p>`}
      ${
        report &&
        html`
          <p class="summary" data-testid="compliance-counts">
            ${Object.entries(report.counts).map(
              ([status, n]) =>
                html`<span class=${`badge group-${STATUS_GROUPS[status]}`}>${n} ${status.replace('_', ' ')}</span> `,
            )}
            <span class="muted">evaluated ${age(report.evaluatedAt, now)} ago</span>
          </p>
          <table class="compliance">
            <thead><tr><th>Host</th><th>Status</th><th>Installed</th><th>Inventory age</th><th>Why unknown</th></tr></thead>
            <tbody>
              ${report.hosts.map(
                (host) => html`
                  <tr data-host=${host.hostId} data-status=${host.status}>
                    <td>${host.hostId}${host.online ? '' : html` <span class="muted">(offline)</span>`}</td>
                    <td><span class=${`badge group-${STATUS_GROUPS[host.status]}`}>${host.status.replace('_', ' ')}</span></td>
                    <td>${host.installed.map((b) => `${b.name} ${b.version} (${b.architecture})`).join(', ') || '—'}</td>
                    <td>${host.ageSeconds === null ? '—' : `${host.ageSeconds} s`}</td>
                    <td>${host.reason ?? ''}</td>
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
