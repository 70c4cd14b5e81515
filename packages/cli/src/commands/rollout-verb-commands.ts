import type { Command } from 'commander';
import type { RolloutVerb } from '../api-client.js';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { renderStatus } from '../render-status.js';

const VERBS: Readonly<Record<RolloutVerb, string>> = {
  submit: 'put a draft up for approval',
  approve: 'approve a rollout (four eyes: not the person who created it)',
  start: 'freeze the target set and start the first wave',
  pause: 'let in-flight hosts finish, send nothing new',
  resume: 'carry on after a pause',
  abort: 'cancel in-flight work; sticky until an explicit retry',
  retry: 'restart a halted or aborted rollout',
  promote: 'skip the rest of the bake and start the next wave',
  revert: 'put every changed host back to its snapshot, in one step',
};

/** The lifecycle verbs: each posts, then prints the rollout's status as the coordinator now sees it. */
export function addRolloutVerbCommands(rollout: Command, ctx: CliContext): void {
  for (const [verb, description] of Object.entries(VERBS) as [RolloutVerb, string][]) {
    rollout
      .command(verb)
      .description(description)
      .argument('<id>', 'rollout id')
      .option('--reason <text>', 'why, for the audit trail')
      .option('--json', 'print the resulting status as JSON')
      .action(async (id: string, opts: JsonFlag & { reason?: string }) => {
        const status = await ctx.api().rolloutVerb(id, verb, opts.reason);
        if (opts.json) writeJson(ctx.output, status);
        else ctx.output.out(renderStatus(status, ctx.now()));
      });
  }

  rollout
    .command('revert-host')
    .description('put one host of a rollout back to its snapshot')
    .argument('<id>', 'rollout id')
    .argument('<host>', 'host id')
    .option('--json', 'print the resulting status as JSON')
    .action(async (id: string, host: string, opts: JsonFlag) => {
      const status = await ctx.api().revertHost(id, host);
      if (opts.json) writeJson(ctx.output, status);
      else ctx.output.out(renderStatus(status, ctx.now()));
    });
}
