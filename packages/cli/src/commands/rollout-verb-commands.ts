import { DEFAULT_STATEMENT_VALIDITY_SECONDS, type RolloutStatus, type RolloutSummary } from '@fleetpatch/shared';
import type { Command } from 'commander';
import type { RolloutVerb } from '../api-client.js';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { renderStatus } from '../render-status.js';
import { renderWatchFrame } from '../render-watch.js';
import {
  addSigningOptions,
  approveSigned,
  describeRevertSigning,
  loadKey,
  type SigningFlags,
  signRevert,
} from '../rollout-signing.js';
import { createStyle } from '../terminal-style.js';
import { oneLine } from '../terminal-text.js';
import { FULL_STATUS_HOSTS } from '../watch-rollout.js';
import { viewOfSummary } from '../watch-view.js';
import { WaveTimings } from '../wave-timings.js';
import type { KeyEnvironment } from './key-commands.js';

const VERBS: Readonly<Record<RolloutVerb, string>> = {
  submit: 'put a draft up for approval',
  approve: 'approve a rollout (four eyes: not the person who created it); a signed one with --sign-key',
  start: 'freeze the target set and start the first wave',
  pause: 'let in-flight hosts finish, send nothing new',
  resume: 'carry on after a pause',
  abort: 'cancel in-flight work; sticky until an explicit retry',
  retry: 'restart a halted or aborted rollout',
  promote: 'skip the rest of the bake and start the next wave',
  revert:
    'put every changed host back to its snapshot, in one step; a signed one once enough people signed (--sign-key)',
};

type VerbOptions = JsonFlag & SigningFlags & { reason?: string; overridePromotion?: string };

/**
 * The lifecycle verbs: each posts, then prints the rollout's status as the coordinator now sees it.
 * `approve`, `revert` and `revert-host` of a signed rollout sign with `--sign-key` (rollout-signing.ts).
 */
export function addRolloutVerbCommands(rollout: Command, ctx: CliContext, keys: () => KeyEnvironment): void {
  const print = (status: RolloutStatus, opts: JsonFlag) => {
    if (opts.json) writeJson(ctx.output, status);
    else ctx.output.out(renderStatus(status, ctx.now()));
  };
  /**
   * The text after a verb answered with the rollout's summary (~1 KB, where the status of 10,000
   * hosts is ~2 MB): a rollout of at most FULL_STATUS_HOSTS hosts is read whole and drawn host by
   * host, a larger one is drawn from the summary, as `rollout status --watch` draws it. `--json`
   * keeps printing the full status: it asks the verb for that instead.
   */
  const printAfter = async (summary: RolloutSummary, verb: string) => {
    if (summary.rollout.hostCount <= FULL_STATUS_HOSTS) {
      // The verb is done whatever this read does: a failed read falls back to the summary, not to an error.
      const status = await ctx
        .api()
        .rolloutStatus(summary.rollout.id)
        .catch((err: unknown) => {
          const why = err instanceof Error ? err.message : String(err);
          ctx.output.err(oneLine`${verb} done; the rollout's full status could not be read after it: ${why}`);
          return undefined;
        });
      if (status) return print(status, {});
    }
    const frame = { view: viewOfSummary(summary), patch: undefined, timings: new WaveTimings(), now: ctx.now() };
    ctx.output.out(renderWatchFrame(frame, createStyle(false)));
  };
  /** A signing step of a revert: it prints how far the signatures are, and the status once the revert started. */
  const revertSigned = async (id: string, host: string | null, opts: VerbOptions) => {
    const outcome = await signRevert(
      ctx,
      ctx.api(),
      id,
      host,
      await loadKey(opts, keys),
      opts.validFor ?? DEFAULT_STATEMENT_VALIDITY_SECONDS,
    );
    ctx.output.err(describeRevertSigning(outcome));
    print(outcome.status, opts);
  };

  for (const [verb, description] of Object.entries(VERBS) as [RolloutVerb, string][]) {
    const command = rollout
      .command(verb)
      .description(description)
      .argument('<id>', 'rollout id')
      .option('--reason <text>', 'why, for the audit trail')
      .option('--json', 'print the resulting status as JSON');
    if (verb === 'approve') addSigningOptions(command, "the rollout's statement as an approver", false);
    if (verb === 'revert') addSigningOptions(command, "the rollout's revert statement", true);
    if (verb === 'start') {
      command.option(
        '--override-promotion <reason>',
        'admins only: start although an earlier environment was not passed; the reason goes on the record',
      );
    }
    command.action(async (id: string, opts: VerbOptions) => {
      if (opts.signKey !== undefined && verb === 'revert') return revertSigned(id, null, opts);
      const api = ctx.api();
      if (opts.signKey !== undefined && verb === 'approve') {
        print(await approveSigned(ctx, api, id, await loadKey(opts, keys), opts.reason), opts);
      } else if (opts.overridePromotion !== undefined) {
        print(await api.startOverridingPromotion(id, opts.overridePromotion), opts);
      } else if (opts.json) {
        print(await api.rolloutVerb(id, verb, opts.reason), opts);
      } else {
        await printAfter(await api.rolloutVerbSummary(id, verb, opts.reason), verb);
      }
    });
  }

  const revertHost = rollout
    .command('revert-host')
    .description(
      'put one host of a rollout back to its snapshot; of a signed one once enough people signed (--sign-key)',
    )
    .argument('<id>', 'rollout id')
    .argument('<host>', 'host id')
    .option('--json', 'print the resulting status as JSON');
  addSigningOptions(revertHost, 'a revert statement for this host', true).action(
    async (id: string, host: string, opts: VerbOptions) => {
      if (opts.signKey !== undefined) return revertSigned(id, host, opts);
      if (opts.json) print(await ctx.api().revertHost(id, host), opts);
      else await printAfter(await ctx.api().revertHostSummary(id, host), 'revert-host');
    },
  );
}
