import { renderChangeRecord } from '@fleetpatch/shared';
import type { Command } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { readInputDocument } from '../json-input.js';
import { validatePatchSpec } from '../local-validation.js';
import { renderPatchHistory, renderPatchList } from '../render-patches.js';
import { parseWholeNumber } from '../rollout-options.js';

export function addPatchCommands(program: Command, ctx: CliContext): void {
  const patch = program.command('patch').description('describe one change: create, show, list');

  patch
    .command('create')
    .description('create a patch from a YAML or JSON file (validated locally first) and print its id')
    .requiredOption('-f, --file <path>', 'the patch as YAML or JSON (a .json file is read as JSON); "-" reads stdin')
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
    .description(
      'show one patch as a change request: what is wrong, why, the fix, the change, its evidence, risk, rollback plan and triggers',
    )
    .argument('<id>', 'patch id')
    .option('--json', 'print the patch as stored, as JSON')
    .option('--markdown', 'print the change request as Markdown (as GET /v1/patches/:id/record?format=md)')
    .action(async (id: string, opts: JsonFlag & { markdown?: boolean }) => {
      if (opts.json) return writeJson(ctx.output, await ctx.api().getPatch(id));
      const record = await ctx.api().patchRecord(id);
      ctx.output.out(renderChangeRecord(record, opts.markdown ? 'markdown' : 'text').trimEnd());
    });

  patch
    .command('history')
    .description("the patch's path through the environments: its content's rollouts per environment")
    .argument('<id>', 'patch id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const history = await ctx.api().patchHistory(id);
      if (opts.json) writeJson(ctx.output, history);
      else ctx.output.out(renderPatchHistory(history));
    });

  patch
    .command('list')
    .description('list patches, newest first, without their content (patch show has the whole patch)')
    .option('--limit <n>', 'how many (1-500)', parseWholeNumber, 50)
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag & { limit: number }) => {
      const { patches } = await ctx.api().listPatches(opts.limit);
      if (opts.json) writeJson(ctx.output, { patches });
      else ctx.output.out(renderPatchList(patches));
    });
}
