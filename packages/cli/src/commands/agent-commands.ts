import type { Command } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { renderAgentDetail, renderAgents } from '../render-agents.js';
import { renderHostPackages } from '../render-packages.js';
import { oneLine } from '../terminal-text.js';

export function addAgentCommands(program: Command, ctx: CliContext): void {
  program
    .command('agents')
    .description(
      'list the fleet: id, online, labels (set by an admin), reported labels that differ, os/arch, last seen',
    )
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag) => {
      const { agents } = await ctx.api().listAgents();
      if (opts.json) writeJson(ctx.output, { agents });
      else ctx.output.out(renderAgents(agents, ctx.now()));
    });

  const agent = program
    .command('agent')
    .description('one host: its history, its packages, revoke its credential, or remove it from the fleet');
  agent
    .command('show')
    .description('one host: facts, labels (set by an admin and reported), and its part in recent rollouts')
    .argument('<id>', 'host id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const detail = await ctx.api().agentDetail(id);
      if (opts.json) writeJson(ctx.output, detail);
      else ctx.output.out(renderAgentDetail(detail, ctx.now()));
    });

  agent
    .command('packages')
    .description("one host's installed packages, as its agent last reported them, and how current that is")
    .argument('<id>', 'host id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const packages = await ctx.api().hostPackages(id);
      if (opts.json) writeJson(ctx.output, packages);
      else ctx.output.out(renderHostPackages(packages, ctx.now()));
    });

  agent
    .command('remove')
    .description(
      'take a host out of the fleet: its credential is revoked, its connection closes, no rollout targets it; its history stays (admin)',
    )
    .argument('<id>', 'host id')
    .option('--force', 'remove it even while it has work in a running, paused or reverting rollout')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag & { force?: boolean }) => {
      const removed = await ctx.api().removeAgent(id, opts.force === true);
      if (opts.json) writeJson(ctx.output, removed);
      else
        ctx.output.out(
          oneLine`agent ${removed.id} removed: its history stays; to bring the host back, enroll it with a join token created with --host ${removed.id} --replace`,
        );
    });

  agent
    .command('revoke')
    .description("revoke a host's credential: its key stops working and its connection closes (admin)")
    .argument('<id>', 'host id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const revoked = await ctx.api().revokeAgent(id);
      if (opts.json) writeJson(ctx.output, revoked);
      else
        ctx.output.out(
          oneLine`agent ${revoked.id} revoked: it cannot connect until it enrolls again with a join token created with --host ${revoked.id} --replace`,
        );
    });
}
