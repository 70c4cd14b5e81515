import { clockTime } from './format.js';
import { html } from './vendor/preact-htm.mjs';

const SHOWN = 300;

/** What an event's data says, as one line of text (it is shown as text, never as markup). */
function dataLine(data) {
  if (!data) return '';
  const text = JSON.stringify(data);
  return text.length > 300 ? `${text.slice(0, 300)}…` : text;
}

/** The rollout's audit trail, newest first, as the event stream delivers it. */
export function EventTimeline({ events }) {
  const shown = events.slice(-SHOWN).reverse();
  return html`
    <section>
      <h2>Events ${events.length > SHOWN ? html`<span class="muted">(latest ${SHOWN} of ${events.length})</span>` : ''}</h2>
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
