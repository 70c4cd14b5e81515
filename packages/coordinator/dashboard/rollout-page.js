import { followRolloutEvents } from './event-stream.js';
import { EventTimeline, TIMELINE_LENGTH } from './event-timeline.js';
import { age, clockTime, rolloutGroup, seconds, waveName } from './format.js';
import { FailedHosts, HostGrid, LiveHealth } from './host-grid.js';
import { patchSummaryOf } from './patches.js';
import { ProgressBar } from './progress-bar.js';
import { FULL_STATUS_HOSTS, readRollout, viewOfSummary } from './rollout-source.js';
import { RolloutVerbs } from './rollout-verbs.js';
import { html, useEffect, useRef, useState } from './vendor/preact-htm.mjs';

const EMPTY_TIMELINE = { latest: [], total: 0 };

/** Re-renders every second: the bake countdown and the ages tick. */
function useNow() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}

/**
 * Refreshes are paced as `rollout status --watch` paces its fetches: during a rollout something
 * changes all the time, and a page refetching the whole status back to back would keep the
 * coordinator busier than the rollout. At least MIN_REFRESH_MS apart, and at least
 * REFRESH_SPACING_FACTOR times as long as the last one took.
 */
const MIN_REFRESH_MS = 250;
const REFRESH_SPACING_FACTOR = 10;

/**
 * The rollout as the page draws it (rollout-source.js: from its full status, or a large one's summary),
 * refreshed whenever its event stream says something happened. Refreshes never overlap, and are paced
 * (above): events arriving during one, or during the pause after it, only mark that another is due, so
 * a burst costs two requests.
 */
function useLiveRollout(id) {
  const [status, setStatus] = useState(null);
  const hostCount = useRef(undefined);
  const [timeline, setTimeline] = useState(EMPTY_TIMELINE);
  const [stream, setStream] = useState('connecting');
  const [error, setError] = useState(null);
  const [hostEventsListed, setHostEventsListed] = useState(true);
  const refresh = useRef(() => {});

  useEffect(() => {
    const controller = new AbortController();
    let running = false;
    let due = false;
    // This rollout's size is not known until its first read: another rollout's must not choose that read.
    hostCount.current = undefined;
    let sizeRead = () => {};
    const sizeKnown = new Promise((resolve) => {
      sizeRead = resolve;
    });
    refresh.current = async () => {
      if (running) {
        due = true;
        return;
      }
      running = true;
      try {
        do {
          due = false;
          const startedAt = performance.now();
          const next = await readRollout(id, hostCount.current, controller.signal);
          hostCount.current = next.rollout.hostCount;
          sizeRead();
          if (!controller.signal.aborted) setStatus(next);
          const spacing = Math.max(MIN_REFRESH_MS, (performance.now() - startedAt) * REFRESH_SPACING_FACTOR);
          await new Promise((resolve) => setTimeout(resolve, startedAt + spacing - performance.now()));
        } while (due && !controller.signal.aborted);
        setError(null);
      } catch (err) {
        sizeRead();
        if (!controller.signal.aborted) setError(err.message);
      } finally {
        running = false;
      }
    };
    // Events are taken in batches (a backlog arrives by the thousand): one state update per batch,
    // keeping only the latest TIMELINE_LENGTH, so a long audit trail costs neither time nor memory.
    let batch = [];
    const flush = () => {
      const arrived = batch;
      batch = [];
      setTimeline((previous) => ({
        latest: previous.latest.concat(arrived).slice(-TIMELINE_LENGTH),
        total: previous.total + arrived.length,
      }));
      void refresh.current();
    };
    setStatus(null);
    setTimeline(EMPTY_TIMELINE);
    void refresh.current();
    // The stream opens once the first read has said how large the rollout is: a large one's stream
    // says that hosts moved (`hostEvents=coalesced`, a notice at most every 250 ms) instead of sending
    // each host's events, ~20,000 of them for 10,000 hosts; its timeline lists the rollout's and
    // waves' events. (A rollout first read before it started has no hosts yet: its stream has them all.)
    void sizeKnown.then(() => {
      if (controller.signal.aborted) return;
      const coalesced = (hostCount.current ?? 0) > FULL_STATUS_HOSTS;
      setHostEventsListed(!coalesced);
      // Back live after the stream was lost (a coordinator restart, a network cut): read the rollout
      // again. The events are resumed from the last one seen, but a host's phases in between are not
      // events, and a read an event set going may have been refused meanwhile.
      let wasLive = false;
      void followRolloutEvents(id, {
        signal: controller.signal,
        hostEvents: coalesced ? 'coalesced' : 'all',
        onStatus: (now) => {
          setStream(now);
          if (now === 'live' && wasLive) void refresh.current();
          if (now === 'live') wasLive = true;
        },
        onProgress: () => void refresh.current(),
        onEvent: (event) => {
          if (batch.push(event) === 1) queueMicrotask(flush);
        },
      });
    });
    return () => controller.abort();
  }, [id]);
  /** A verb's answer is the rollout's summary: drawn as it is when the rollout is large, else read whole. */
  const verbDone = (summary) => {
    hostCount.current = summary.rollout.hostCount;
    if (summary.rollout.hostCount > FULL_STATUS_HOSTS) setStatus(viewOfSummary(summary));
    else void refresh.current();
  };
  return { status, verbDone, timeline, hostEventsListed, stream, error };
}

function Header({ status, patch, now }) {
  const r = status.rollout;
  const elapsedFrom = r.startedAt ?? r.createdAt;
  const elapsedTo = r.finishedAt ? Date.parse(r.finishedAt) : now;
  return html`
    <header class="rollout-head">
      <h1>
        <span class="title" data-testid="patch-title">${patch?.title ?? r.patchId}</span>
        <span class=${`badge group-${rolloutGroup(r.state)}`} data-testid="rollout-state">${r.state}</span>
      </h1>
      <p class="muted">
        ${r.id} · patch ${r.patchId}${patch?.ticket ? ` · ticket ${patch.ticket}` : ''} · by ${r.createdBy} ·
        created ${clockTime(r.createdAt)} · ${r.finishedAt ? 'took' : 'running for'} ${age(elapsedFrom, elapsedTo)}
      </p>
      ${r.stateReason && html`<p class="reason" data-testid="state-reason">${r.stateReason}</p>`}
    </header>
  `;
}

function FailureBudget({ status }) {
  const { failures, toleratedFailures, haltsOn } = status;
  const limit = toleratedFailures + 1;
  const used = Math.min(100, (100 * failures) / limit);
  return html`
    <section class="budget" data-testid="failure-budget">
      <h2>Failure budget</h2>
      <span class="bar"><span class=${`fill ${failures > toleratedFailures ? 'group-failed' : 'group-attention'}`}
        style=${{ width: `${used}%` }}></span></span>
      <span>${failures} failed of ${toleratedFailures} tolerated · ${haltsOn}</span>
    </section>
  `;
}

function Waves({ status, now }) {
  // A wave drawn from the full status has its hosts; from a summary, its counts.
  const r = status.rollout;
  return html`
    <section>
      <h2>Waves</h2>
      <table class="waves">
        <tbody>
          ${status.waves.map((wave) => {
            const baking = wave.phase === 'baking' && r.bakeUntil;
            const left = baking ? Math.ceil((Date.parse(r.bakeUntil) - now) / 1000) : 0;
            return html`
              <tr data-wave=${wave.wave + 1}>
                <th>${waveName(wave.wave)}</th>
                <td><span class="phase">${wave.phase}</span>${baking && html` <span class="countdown">bake ends in ${seconds(left)}</span>`}</td>
                <td><${ProgressBar} hosts=${wave.hosts} counts=${wave.counts} /></td>
              </tr>
            `;
          })}
        </tbody>
      </table>
      ${status.waves.length === 0 && html`<p class="muted">The waves are planned when the rollout starts.</p>`}
    </section>
  `;
}

export function RolloutPage({ id, who }) {
  const { status, verbDone, timeline, hostEventsListed, stream, error } = useLiveRollout(id);
  const [patch, setPatch] = useState(null);
  const now = useNow();
  const patchId = status?.rollout.patchId;
  useEffect(() => {
    if (patchId) patchSummaryOf(patchId).then(setPatch, () => setPatch(null));
  }, [patchId]);

  if (!status) {
    return html`<section>${error ? html`<p class="error" role="alert">${error}</p>` : html`<p class="muted">Loading…</p>`}</section>`;
  }
  const compliance = status.compliance;
  return html`
    <article class="rollout" data-rollout=${status.rollout.id}>
      <p><a href="#/rollouts">← Rollouts</a> <span class=${`stream ${stream === 'live' ? 'live' : ''}`} data-testid="stream">${stream}</span></p>
      <${Header} status=${status} patch=${patch} now=${now} />
      ${error && html`<p class="error" role="alert">${error}</p>`}
      <${RolloutVerbs} rollout=${status.rollout} signed=${status.signed} who=${who} onDone=${verbDone} />
      <${FailureBudget} status=${status} />
      <${Waves} status=${status} now=${now} />
      <section>
        <h2>Hosts</h2>
        ${
          status.everyHost
            ? html`<${HostGrid} waves=${status.waves} />`
            : html`<p class="muted" data-testid="hosts-counted">${status.rollout.hostCount} hosts: each wave's are counted above, failed and failing ones named below (the grid draws rollouts of up to ${FULL_STATUS_HOSTS}); <code>fleetpatch rollout hosts ${status.rollout.id}</code> lists them.</p>`
        }
      </section>
      <${FailedHosts} hosts=${status.failedHosts} more=${status.moreFailed} rolloutId=${status.rollout.id} />
      <${LiveHealth} hosts=${status.failingHosts} />
      ${
        compliance &&
        html`<p><a href=${`#/compliance?${new URLSearchParams({ source: compliance.source, fixed: compliance.fixed })}`}>
          Compliance of ${compliance.source} ${compliance.fixed}</a></p>`
      }
      <${EventTimeline} latest=${timeline.latest} total=${timeline.total} hostEventsListed=${hostEventsListed} rolloutId=${status.rollout.id} />
    </article>
  `;
}
