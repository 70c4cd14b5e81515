import { api, seg } from './api.js';
import { html, useState } from './vendor/preact-htm.mjs';

/**
 * The verbs a rollout offers now, with the permission each needs. Only the buttons the token's role
 * allows are shown; the coordinator still checks both the role and the state of every call.
 */
const VERBS = [
  { verb: 'submit', label: 'Submit for approval', permission: 'write', when: (r) => r.state === 'draft' },
  {
    verb: 'approve',
    label: 'Approve',
    permission: 'approve',
    when: (r, signed) => !signed && r.state === 'awaiting_approval',
  },
  { verb: 'start', label: 'Start', permission: 'write', when: (r) => r.state === 'scheduled' },
  { verb: 'pause', label: 'Pause', permission: 'write', when: (r) => r.state === 'running' },
  { verb: 'resume', label: 'Resume', permission: 'write', when: (r) => r.state === 'paused' },
  {
    verb: 'promote',
    label: 'Promote (end the bake)',
    permission: 'write',
    when: (r) => r.state === 'running' && r.bakeUntil !== null,
  },
  {
    verb: 'abort',
    label: 'Abort',
    permission: 'write',
    confirm: 'Abort this rollout? Hosts already changed stay changed until reverted.',
    when: (r) => ['draft', 'awaiting_approval', 'scheduled', 'running', 'paused'].includes(r.state),
  },
  {
    verb: 'revert',
    label: 'Revert',
    permission: 'write',
    confirm: 'Revert every host this rollout changed?',
    when: (r, signed) => !signed && ['succeeded', 'halted', 'aborted', 'paused'].includes(r.state),
  },
];

/**
 * `signed`: whether the rollout is signed (null: not known, as from a started large rollout's summary;
 * its revert is offered, and the coordinator refuses an unsigned revert of a signed rollout, saying so).
 */
export function RolloutVerbs({ rollout, signed, who, onDone }) {
  const [busy, setBusy] = useState(null);
  const [error, setError] = useState(null);
  const offered = VERBS.filter((v) => who.permissions.includes(v.permission) && v.when(rollout, signed === true));
  if (offered.length === 0 && !error) return null;
  const act = async ({ verb, confirm: question }) => {
    if (question && !confirm(question)) return;
    setBusy(verb);
    setError(null);
    try {
      // The summary (~1 KB): the page reads the full status itself when the rollout is small.
      onDone(await api(`/v1/rollouts/${seg(rollout.id)}/${verb}?view=summary`, { method: 'POST' }));
    } catch (err) {
      setError(`${verb}: ${err.message}`);
    } finally {
      setBusy(null);
    }
  };
  return html`
    <div class="verbs">
      ${offered.map(
        (v) =>
          html`<button type="button" data-verb=${v.verb} class=${v.confirm ? 'danger' : ''} disabled=${busy !== null}
            onClick=${() => act(v)}>${v.label}</button>`,
      )}
      ${signed === true && html`<span class="muted">A signed rollout is approved and reverted with the CLI: each needs a signature by your key.</span>`}
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </div>
  `;
}
