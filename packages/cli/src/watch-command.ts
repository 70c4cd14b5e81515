import type { Patch } from '@fleetpatch/shared';
import type { CliContext, JsonFlag } from './cli-context.js';
import type { ExitCode } from './cli-errors.js';
import { renderStatus } from './render-status.js';
import { renderWatchFrame, type WatchFrame } from './render-watch.js';
import { describeWatchChanges } from './render-watch-log.js';
import { createStyle } from './terminal-style.js';
import { oneLine } from './terminal-text.js';
import { rolloutOf, type WatchOutcome, type WatchSource, watchExitCode, watchRollout } from './watch-rollout.js';
import { viewOfStatus, viewOfSummary, type WatchView } from './watch-view.js';
import { formatDuration, WaveTimings } from './wave-timings.js';

export interface WatchFlags extends JsonFlag {
  watch?: boolean;
  timeout?: number;
  reconnectFor: number;
}

/** The countdowns (bake, start, elapsed) tick at this pace on a terminal, between events. */
const TICK_MS = 1000;

/**
 * `rollout status --watch`: on a terminal a live view redrawn in place (render-watch.ts, through
 * log-update); off a terminal one timestamped line per change (render-watch-log.ts); with --json one
 * status per line. Returns the exit code of how it ended (cli-errors.ts has the table).
 */
export async function watchStatus(ctx: CliContext, rolloutId: string, opts: WatchFlags): Promise<ExitCode> {
  const api = ctx.api();
  const timings = new WaveTimings();
  const style = createStyle(ctx.output.colour === true);
  const live = !opts.json && ctx.output.interactive && ctx.output.live ? await ctx.output.live() : undefined;
  let patch: Pick<Patch, 'title' | 'ticket'> | undefined;
  let patchAsked = false;
  let last: WatchView | undefined;
  let lastJson: string | undefined;
  let lost: WatchFrame['lost'];
  const stamp = (line: string) => ctx.output.out(`${ctx.now().toISOString()} ${line}`);
  const draw = () => {
    if (live && last) live.update(renderWatchFrame({ view: last, patch, timings, now: ctx.now(), lost }, style));
  };
  const ticker = live ? setInterval(draw, TICK_MS) : undefined;

  let outcome: WatchOutcome;
  try {
    outcome = await watchRollout(
      api,
      rolloutId,
      async (source) => {
        if (!patchAsked) {
          patchAsked = true;
          // The title and ticket are for people; a patch that cannot be read leaves them out.
          patch = await api.getPatch(rolloutOf(source).patchId).catch(() => undefined);
        }
        const view = viewOf(source);
        if (opts.json) {
          // --json reads the full status (fullStatus below): one line per change.
          const json = JSON.stringify(source.kind === 'status' ? source.status : source.summary);
          if (json !== lastJson) ctx.output.out(json);
          lastJson = json;
        } else if (!live) {
          for (const line of describeWatchChanges(last, view, patch)) stamp(line);
        }
        last = view;
        draw();
      },
      {
        fullStatus: opts.json === true,
        timeoutMs: opts.timeout === undefined ? undefined : opts.timeout * 1000,
        reconnectForMs: opts.reconnectFor * 1000,
        onEvent: (event) => timings.record(event),
        onConnectionChange: (now) => {
          if (!live && !opts.json) {
            if (now && !lost) stamp(oneLine`coordinator unreachable (${now.reason}); reconnecting…`);
            if (!now && lost)
              stamp(`coordinator reachable again after ${formatDuration(ctx.now().getTime() - lost.since.getTime())}`);
          }
          lost = now;
          draw();
        },
      },
    );
  } finally {
    clearInterval(ticker);
    draw();
    live?.done();
  }
  const code = watchExitCode(outcome);
  if (outcome.kind === 'timed_out')
    ctx.output.err(`watch timed out after ${opts.timeout}s; the rollout carries on (exit ${code})`);
  if (outcome.kind === 'unreachable') {
    ctx.output.err(
      oneLine`coordinator unreachable for ${opts.reconnectFor}s, gave up: ${outcome.reason} (exit ${code})`,
    );
  }
  if (outcome.kind === 'final' && !live && !opts.json) {
    // The whole status once more, as a record of where every host ended and why: split on the
    // newlines renderStatus puts between its lines (it escapes any inside a value), each stamped. A
    // large rollout's record is its summary: its waves' counts and the failed hosts it names.
    const { source } = outcome;
    const record =
      source.kind === 'status'
        ? renderStatus(source.status, ctx.now(), { everyHost: true })
        : renderWatchFrame({ view: viewOf(source), patch, timings, now: ctx.now() }, style);
    for (const line of record.split('\n')) stamp(line);
    stamp(oneLine`finished ${rolloutOf(source).state} (exit ${code})`);
  }
  return code;
}

function viewOf(source: WatchSource): WatchView {
  return source.kind === 'status' ? viewOfStatus(source.status) : viewOfSummary(source.summary);
}
