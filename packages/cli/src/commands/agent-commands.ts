import type { Command } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { renderAgentDetail, renderAgents } from '../render-agents.js';
import { collectLabel } from '../rollout-options.js';

export function addAgentCommands(program: Command, ctx: CliContext): void {
  program
    .command('agents')
    .description('list the fleet: id, online, labels, os/arch, last seen')
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag) => {
      const { agents } = await ctx.api().listAgents();
      if (opts.json) writeJson(ctx.output, { agents });
      else ctx.output.out(renderAgents(agents, ctx.now()));
    });

  const agent = program.command('agent').description('manage agent registrations');
  agent
    .command('register')
    .description('register an agent and print its token (shown once; only its hash is kept)')
    .argument('<id>', 'host id, e.g. web-1')
    .option('--label <key=value>', 'a label the target selectors match (repeatable)', collectLabel, {})
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag & { label: Record<string, string> }) => {
      const registered = await ctx.api().registerAgent(id, opts.label);
      if (opts.json) {
        writeJson(ctx.output, registered);
        return;
      }
      // The token alone on stdout so that `TOKEN=$(fleetpatch agent register web-1)` works.
      ctx.output.out(registered.token);
      ctx.output.err(`agent ${registered.id} registered; the token above is shown once: hand it to the agent now`);
    });

  agent
    .command('show')
    .description('one host: facts, labels, and its part in recent rollouts')
    .argument('<id>', 'host id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const detail = await ctx.api().agentDetail(id);
      if (opts.json) writeJson(ctx.output, detail);
      else ctx.output.out(renderAgentDetail(detail, ctx.now()));
    });

  agent
    .command('replace-token')
    .description('issue a new token for an agent; the old one stops working and its connection closes')
    .argument('<id>', 'host id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const replaced = await ctx.api().replaceAgentToken(id);
      if (opts.json) {
        writeJson(ctx.output, replaced);
        return;
      }
      ctx.output.out(replaced.token);
      ctx.output.err(`agent ${replaced.id}: the old token no longer works; give the agent the token above`);
    });
}
