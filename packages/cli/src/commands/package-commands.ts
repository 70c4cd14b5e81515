import { COMPLIANCE_STATUSES, type ComplianceQuery } from '@fleetpatch/shared';
import { type Command, Option } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { UsageError } from '../cli-errors.js';
import { writeJson } from '../cli-output.js';
import { complianceExitCode, renderCompliance, renderPackageVersions } from '../render-packages.js';

/** The fleet's packages: which versions are where, and which hosts a fix has reached. */
export function addPackageCommands(program: Command, ctx: CliContext): void {
  program
    .command('compliance')
    .description(
      'every host against a fixed source version: exposed, unknown, fixed, not installed; exit 3 if any host is exposed, 4 if none is but some are unknown',
    )
    .requiredOption('--source <name>', 'the source package the advisory names, e.g. openssl')
    .requiredOption('--fixed <version>', 'the source version that fixes it, e.g. 3.0.15-1~deb12u1')
    .addOption(
      new Option(
        '--status <status>',
        'list only hosts with this status (counts and exit code still cover all)',
      ).choices([...COMPLIANCE_STATUSES]),
    )
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag & { source: string; fixed: string; status?: ComplianceQuery['status'] }) => {
      const report = await ctx.api().compliance({
        source: opts.source,
        fixed: opts.fixed,
        ...(opts.status ? { status: opts.status } : {}),
      });
      if (opts.json) writeJson(ctx.output, report);
      else ctx.output.out(renderCompliance(report, ctx.now()));
      ctx.setExitCode(complianceExitCode(report));
    });

  program
    .command('packages')
    .description('installed versions of a package (--name) or of the binaries of a source (--source), with host counts')
    .option('--name <package>', 'a binary package, e.g. libssl3')
    .option('--source <package>', 'a source package, e.g. openssl')
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag & { name?: string; source?: string }) => {
      if ((opts.name === undefined) === (opts.source === undefined)) {
        throw new UsageError('give one of --name or --source');
      }
      const result = await ctx
        .api()
        .packageVersions(opts.name !== undefined ? { name: opts.name } : { source: opts.source as string });
      if (opts.json) writeJson(ctx.output, result);
      else ctx.output.out(renderPackageVersions(result));
    });
}
