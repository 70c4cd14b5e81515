import type { Patch, RolloutStatus } from '@fleetpatch/shared';
import type { CliContext, JsonFlag } from './cli-context.js';
import type { ExitCode } from './cli-errors.js';
import { renderStatus } from './render-status.js';
import { renderWatchFrame, type WatchFrame } from './render-watch.js';
import { describeWatchChanges } from './render-watch-log.js';
import { createStyle } from './terminal-style.js';
import { oneLine } from './terminal-text.js';
import { type WatchOutcome, watchExitCode, watchRollout } from './watch-rollout.js';
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
  let last: RolloutStatus | undefined;
  let lost: WatchFrame['lost'];
  const stamp = (line: string) => ctx.output.out(`${ctx.now().toISOString()} ${line}`);
  const draw = () => {
    if (live && last) live.update(renderWatchFrame({ status: last, patch, timings, now: ctx.now(), lost }, style));
  };
  const ticker = live ? setInterval(draw, TICK_MS) : undefined;

  let outcome: WatchOutcome;
  try {
    outcome = await watchRollout(
      api,
      rolloutId,
      async (status) => {
        if (!patchAsked) {
          patchAsked = true;
          // The title and ticket are for people; a patch that cannot be read leaves them out.
          patch = await api.getPatch(status.rollout.patchId).catch(() => undefined);
        }
        if (opts.json) {
          if (JSON.stringify(status) !== JSON.stringify(last)) ctx.output.out(JSON.stringify(status));
        } else if (!live) {
          for (const line of describeWatchChanges(last, status, patch)) stamp(line);
        }
        last = status;
        draw();
      },
      {
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
    // newlines renderStatus puts between its lines (it escapes any inside a value), each stamped.
    for (const line of renderStatus(outcome.status, ctx.now()).split('\n')) stamp(line);
    stamp(oneLine`finished ${outcome.status.rollout.state} (exit ${code})`);
  }
  return code;
}
