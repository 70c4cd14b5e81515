import { clockTime } from './format.js';
import { html } from './vendor/preact-htm.mjs';

/** Events kept and shown: the latest; the audit trail (`fleetpatch events`) has them all. */
export const TIMELINE_LENGTH = 300;

/** What an event's data says, as one line of text (it is shown as text, never as markup). */
function dataLine(data) {
  if (!data) return '';
  const text = JSON.stringify(data);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/**
 * The rollout's audit trail, newest first, as the event stream delivers it: `total` so far, the
 * `latest` of them; without its hosts' events for a large rollout (`hostEventsListed` false).
 */
export function EventTimeline({ latest, total, hostEventsListed = true, rolloutId }) {
  const shown = [...latest].reverse();
  return html`
    <section>
      <h2>Events ${total > shown.length ? html`<span class="muted">(latest ${shown.length} of ${total})</span>` : ''}</h2>
      ${!hostEventsListed && html`<p class="muted" data-testid="host-events-counted">The rollout's and its waves' events; its hosts' are not listed (more than 1,000 hosts: <code>fleetpatch events ${rolloutId}</code> has them all).</p>`}
      <ol class="timeline" data-testid="timeline">
        ${shown.map(
          (event) => html`
            <li key=${event.seq} data-type=${event.type}>
              <time datetime=${event.at}>${clockTime(event.at)}</time>
              <span class="type">${event.type}</span>
              ${event.hostId && html`<span class="host-ref">${event.hostId}</span>`}
              ${event.fromState && html`<span class="transition">${event.fromState} → ${event.toState}</span>`}
              <span class="actor">by ${event.actor}</span>
              <span class="data">${dataLine(event.data)}</span>
            </li>
          `,
        )}
      </ol>
    </section>
  `;
}
