import type { Command } from 'commander';
import { loadConfig, selectContext, useContext } from '../cli-config.js';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { UsageError } from '../cli-errors.js';
import { writeJson } from '../cli-output.js';
import { renderTable } from '../render-table.js';

/** `fleetpatch config …`: the named contexts of the config file (cli-config.ts), like kubectl's. */
export function addConfigCommands(program: Command, ctx: CliContext): void {
  const config = program
    .command('config')
    .description('named contexts (URL, token file, CA, signing key) in the config file (FLEETPATCH_CONFIG)');
  const file = () => {
    if (!ctx.configFile) throw new UsageError('no config file here');
    return ctx.configFile();
  };

  config
    .command('get-contexts')
    .description('list the contexts; * marks the current one')
    .option('--json', 'print the raw JSON')
    .action((opts: JsonFlag) => {
      const { path, files } = file();
      const loaded = loadConfig(path, files);
      if (opts.json) {
        writeJson(ctx.output, { path, ...loaded });
        return;
      }
      const names = Object.keys(loaded.contexts);
      if (names.length === 0) {
        ctx.output.out(`no contexts in ${path}`);
        return;
      }
      ctx.output.out(
        renderTable(
          ['current', 'name', 'url', 'token file'],
          names.map((name) => {
            const entry = loaded.contexts[name] ?? {};
            return [name === loaded.currentContext ? '*' : '', name, entry.url ?? '-', entry.tokenFile ?? '-'];
          }),
        ),
      );
    });

  config
    .command('current-context')
    .description('print the context in use (--context, else the file’s currentContext)')
    .action(() => {
      const { path, files } = file();
      const chosen = selectContext(loadConfig(path, files), path, program.opts<{ context?: string }>().context);
      if (!chosen) throw new UsageError(`no current context in ${path}: fleetpatch config use-context NAME`);
      ctx.output.out(chosen.name);
    });

  config
    .command('use-context')
    .description('make a context the current one (written to the config file)')
    .argument('<name>', 'context name')
    .action((name: string) => {
      const { path, files } = file();
      useContext(path, name, files);
      ctx.output.out(`current context: ${name} (${path})`);
    });
}
