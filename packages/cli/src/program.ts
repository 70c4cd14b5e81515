import { packageVersion } from '@fleetpatch/shared';
import { Argument, Command } from 'commander';
import type { CliContext } from './cli-context.js';
import { describeErrorAsJson, formatExitCodeTable, UsageError } from './cli-errors.js';
import { addAgentCommands } from './commands/agent-commands.js';
import { addConfigCommands } from './commands/config-commands.js';
import { addEventsCommand } from './commands/events-command.js';
import { addJoinTokenCommands } from './commands/join-token-commands.js';
import { addKeyCommands, type KeyEnvironment } from './commands/key-commands.js';
import { addPackageCommands } from './commands/package-commands.js';
import { addPatchCommands } from './commands/patch-commands.js';
import { addRolloutCommands } from './commands/rollout-commands.js';
import { bashCompletion, zshCompletion } from './completion.js';

const version = packageVersion(import.meta.url, '@fleetpatch/cli');

/**
 * The whole command tree. Commander errors throw (exitOverride) so main.ts owns every exit code.
 * `keyEnvironment` is read only when a command needs a signing key (tests give their own).
 */
export function buildProgram(ctx: CliContext, keyEnvironment: () => KeyEnvironment): Command {
  const program = new Command('fleetpatch')
    .description('Roll one change out to many servers in waves, safely, and take it back in one step.')
    .version(version)
    .option('--url <url>', 'coordinator URL, e.g. http://127.0.0.1:7420 (env FLEETPATCH_URL)')
    .option('--token <token>', 'API token (env FLEETPATCH_TOKEN)')
    .option('--ca-file <file>', 'PEM CA that signed an https:// coordinator certificate (env FLEETPATCH_CA_FILE)')
    .option('--insecure', 'allow sending the token over plain http:// to a host other than this one')
    .option('--context <name>', 'a context of the config file (FLEETPATCH_CONFIG): URL, token file, CA, signing key')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => ctx.output.out(text.replace(/\n$/, '')),
      writeErr: (text) => ctx.output.err(text.replace(/\n$/, '')),
      // With --json a malformed command line is a JSON error too (the code a script checks is 2).
      ...(ctx.errorsAsJson
        ? {
            outputError: (text: string) =>
              ctx.output.err(describeErrorAsJson(new UsageError(text.replace(/^error: /, '').trim())).text),
          }
        : {}),
    })
    .showHelpAfterError(ctx.errorsAsJson ? false : '(add --help for usage)')
    .addHelpText('after', `\n${formatExitCodeTable()}`);
  addAgentCommands(program, ctx);
  addJoinTokenCommands(program, ctx);
  addKeyCommands(program, ctx, keyEnvironment);
  addPatchCommands(program, ctx);
  addRolloutCommands(program, ctx, keyEnvironment);
  addPackageCommands(program, ctx);
  addEventsCommand(program, ctx);
  addConfigCommands(program, ctx);
  program
    .command('completion')
    .description('print a shell completion script: source <(fleetpatch completion bash), or zsh')
    .addArgument(new Argument('<shell>', 'the shell').choices(['bash', 'zsh']))
    .action((shell: 'bash' | 'zsh') => {
      // Generated from this very tree, so it can never offer a command or flag that is gone.
      ctx.output.out((shell === 'bash' ? bashCompletion(program) : zshCompletion(program)).trimEnd());
    });
  return program;
}
