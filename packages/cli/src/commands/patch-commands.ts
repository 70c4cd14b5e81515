import type { Command } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { readInputDocument } from '../json-input.js';
import { validatePatchSpec } from '../local-validation.js';
import { renderPatch, renderPatchList } from '../render-patches.js';
import { parseWholeNumber } from '../rollout-options.js';

export function addPatchCommands(program: Command, ctx: CliContext): void {
  const patch = program.command('patch').description('describe one change: create, show, list');

  patch
    .command('create')
    .description('create a patch from a YAML or JSON file (validated locally first) and print its id')
    .requiredOption('--file <path>', 'the patch as YAML or JSON (a .json file is read as JSON); "-" reads stdin')
    .option('--json', 'print the stored patch as JSON')
    .action(async (opts: JsonFlag & { file: string }) => {
      const input = await readInputDocument(opts.file, ctx.readStdin);
      const spec = validatePatchSpec(input.value, input.source, input.locate);
      const created = await ctx.api().createPatch(spec);
      if (opts.json) writeJson(ctx.output, created);
      else ctx.output.out(created.id);
    });

  patch
    .command('show')
    .description('show one patch: what is wrong, why, the fix, the change')
    .argument('<id>', 'patch id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const found = await ctx.api().getPatch(id);
      if (opts.json) writeJson(ctx.output, found);
      else ctx.output.out(renderPatch(found));
    });

  patch
    .command('list')
    .description('list patches, newest first')
    .option('--limit <n>', 'how many (1-500)', parseWholeNumber, 50)
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag & { limit: number }) => {
      const { patches } = await ctx.api().listPatches(opts.limit);
      if (opts.json) writeJson(ctx.output, { patches });
      else ctx.output.out(renderPatchList(patches));
    });
}
