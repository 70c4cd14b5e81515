import {
  DEFAULT_STATEMENT_VALIDITY_SECONDS,
  HOST_RUN_STATES,
  type HostRunState,
  NewPatchSchema,
  patchSpecOf,
  type RolloutStatus,
} from '@fleetpatch/shared';
import { type Command, Option } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { formatExitCodeTable, LocalValidationError, UsageError } from '../cli-errors.js';
import { writeJson } from '../cli-output.js';
import { type InputDocument, readInputDocument } from '../json-input.js';
import { validatePatchSpec, validateRolloutRequest } from '../local-validation.js';
import { renderPlan } from '../render-plan.js';
import { renderRolloutHosts } from '../render-rollout-hosts.js';
import { preflightExitCode, renderPreflight, renderRolloutList } from '../render-rollouts.js';
import { renderStatus } from '../render-status.js';
import { readRolloutHosts } from '../rollout-host-pages.js';
import {
  AUTO_REVERT_CHOICES,
  buildRolloutRequest,
  parseExposedTo,
  parseFailureBudget,
  parseHosts,
  parseLabels,
  parsePositiveCount,
  parsePositiveSeconds,
  parseSeconds,
  parseWaveNumber,
  parseWaves,
  parseWholeNumber,
  type RolloutCreateFlags,
} from '../rollout-options.js';
import {
  addSigningOptions,
  checkPatchAgainstFile,
  loadKey,
  type SigningFlags,
  signNewRollout,
} from '../rollout-signing.js';
import { oneLine } from '../terminal-text.js';
import { type WatchFlags, watchStatus } from '../watch-command.js';
import type { KeyEnvironment } from './key-commands.js';
import { addRolloutVerbCommands } from './rollout-verb-commands.js';

/** `keys` is read only when a command signs (`--sign-key`). */
export function addRolloutCommands(program: Command, ctx: CliContext, keys: () => KeyEnvironment): void {
  const rollout = program
    .command('rollout')
    .description('roll a patch out in waves: create, plan, approve, start, watch, revert');
  addCreate(rollout, ctx, keys);

  rollout
    .command('plan')
    .description('the waves with their hosts, and the failure that halts the rollout')
    .argument('<id>', 'rollout id')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const plan = await ctx.api().rolloutPlan(id);
      if (opts.json) writeJson(ctx.output, plan);
      else ctx.output.out(renderPlan(plan));
    });

  rollout
    .command('hosts')
    .description(
      "a rollout's hosts in wave order, each with its state and why; --state and --wave filter (read page by page, at any size)",
    )
    .argument('<id>', 'rollout id')
    .addOption(new Option('--state <state>', 'only hosts in this state').choices(HOST_RUN_STATES))
    .option('--wave <n>', 'only hosts of this wave (1 is the canary)', parseWaveNumber)
    .option('--limit <n>', 'at most this many hosts (default: every one that matches)', parsePositiveCount)
    .option(
      '--json',
      "print {hosts, next} as JSON: next is the API's cursor after the last host when --limit left more out; each host's wave is 0-based, as the API's",
    )
    .action(async (id: string, opts: JsonFlag & { state?: HostRunState; wave?: number; limit?: number }) => {
      const api = ctx.api();
      const { hosts, next } = await readRolloutHosts(
        api,
        id,
        { state: opts.state, wave: opts.wave === undefined ? undefined : opts.wave - 1 },
        opts.limit,
      );
      if (opts.json) {
        writeJson(ctx.output, { hosts, next });
        return;
      }
      if (hosts.length === 0) {
        ctx.output.err('no host of the rollout matches');
        return;
      }
      ctx.output.out(renderRolloutHosts(hosts));
      if (next !== null) ctx.output.err(`the first ${hosts.length} shown; more match (raise --limit)`);
    });

  rollout
    .command('status')
    .description(
      'state, failures and the hosts by wave (a wave of more than 20 counted by state); --watch follows it to a final state',
    )
    .argument('<id>', 'rollout id')
    .option(
      '-w, --watch',
      'follow it until succeeded, halted, aborted, reverted or revert_failed (exit 0, 7, 8, 9, 10); a terminal gets a live view, anything else timestamped lines',
    )
    .option('--timeout <seconds>', 'with --watch: give up after this long (exit 6)', parsePositiveSeconds)
    .option(
      '--reconnect-for <seconds>',
      'with --watch: how long to keep reconnecting to a coordinator that went away (exit 5 after)',
      parsePositiveSeconds,
      120,
    )
    .option('--json', 'print the raw JSON (one object per line with --watch)')
    .addHelpText('after', `\n${formatExitCodeTable()}`)
    .action(async (id: string, opts: WatchFlags) => {
      const api = ctx.api();
      if (!opts.watch) {
        if (opts.timeout !== undefined) throw new UsageError('--timeout limits a watch: it goes with --watch');
        const status = await api.rolloutStatus(id);
        if (opts.json) writeJson(ctx.output, status);
        else ctx.output.out(renderStatus(status, ctx.now()));
        return;
      }
      ctx.setExitCode(await watchStatus(ctx, id, opts));
    });

  rollout
    .command('preflight')
    .description(
      'dry run: every target host checks the preconditions and says what it would do; exit 3 when one would fail or is blocked, 4 when one did not answer',
    )
    .argument('<id>', 'rollout id')
    .option('--timeout <seconds>', 'how long to wait for the agents (1-600)', parseSeconds, 30)
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag & { timeout: number }) => {
      const preflight = await ctx.api().preflight(id, opts.timeout);
      if (opts.json) writeJson(ctx.output, preflight);
      else ctx.output.out(renderPreflight(preflight));
      ctx.setExitCode(preflightExitCode(preflight));
    });

  rollout
    .command('list')
    .description('list rollouts, newest first')
    .option('--limit <n>', 'how many (1-500)', parseWholeNumber, 50)
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag & { limit: number }) => {
      const { rollouts } = await ctx.api().listRollouts(opts.limit);
      if (opts.json) writeJson(ctx.output, { rollouts });
      else ctx.output.out(renderRolloutList(rollouts));
    });

  addRolloutVerbCommands(rollout, ctx, keys);
}

type CreateOptions = RolloutCreateFlags & JsonFlag & SigningFlags & { file?: string; patchFile?: string };

function addCreate(rollout: Command, ctx: CliContext, keys: () => KeyEnvironment): void {
  const create = rollout
    .command('create')
    .description('create a rollout of one patch (validated locally first); prints its id and plan')
    .option('--patch <id>', 'the patch to roll out')
    .option('--labels <k=v,...>', 'target: hosts an admin gave all these labels (at enrollment)', parseLabels)
    .option(
      '--reported-labels <k=v,...>',
      'narrow --labels or --hosts to hosts that report all these labels themselves (the host says so)',
      parseLabels,
    )
    .option('--hosts <a,b,...>', 'target: exactly these host ids', parseHosts)
    .option('--all', 'target: every registered host')
    .option(
      '--exposed-to <source=fixed>',
      'target (or narrow the target to) the hosts whose inventory has a binary of the source below the fixed version, e.g. openssl=3.0.15-1~deb12u1; frozen at start',
      parseExposedTo,
    )
    .option('--waves <steps>', 'wave sizes: host counts and percentages, e.g. 1,10%,50%,100%', parseWaves)
    .option('--max-parallel <n>', 'hosts of one wave in flight at once', parseWholeNumber)
    .option(
      '--max-failures <n|n%>',
      'failures tolerated before the rollout halts (0: the first halts)',
      parseFailureBudget,
    )
    .option('--bake <seconds>', 'wait this long, health still watched, after each wave', parseSeconds)
    .addOption(new Option('--auto-revert <scope>', 'what goes back when things fail').choices([...AUTO_REVERT_CHOICES]))
    .addOption(
      new Option(
        '--stale-services <mode>',
        'a host whose services still run the old library after the change: report it, or count it as failed',
      ).choices(['report', 'fail']),
    )
    .option('--approvals <n>', 'approvals needed before it may start (0-10)', parseWholeNumber)
    .option('--draft', 'create as a draft: plan and dry-run it, then `rollout submit` it for approval')
    .option(
      '--rehearse-revert',
      'the canary wave rehearses its revert: apply, revert to exactly the prior state, apply again',
    )
    .option(
      '--file <path>',
      'a rollout request as YAML or JSON ("-" reads stdin; metric `analyses` go here); flags override its fields',
    )
    .option('--json', 'print the created rollout as JSON');
  addSigningOptions(create, 'the rollout as its author (then agents that require signatures accept it)', true)
    .option('--patch-file <file>', 'with --sign-key: refuse to sign unless the patch equals this local spec')
    .action(async (opts: CreateOptions) => {
      if (opts.patchFile !== undefined && opts.signKey === undefined) {
        throw new UsageError('--patch-file checks the patch before signing: it goes with --sign-key');
      }
      let base: Record<string, unknown> | undefined;
      let input: InputDocument | undefined;
      if (opts.file !== undefined) {
        input = await readInputDocument(opts.file, ctx.readStdin);
        if (typeof input.value !== 'object' || input.value === null || Array.isArray(input.value)) {
          throw new LocalValidationError(`${input.source} must hold an object (a rollout request)`, []);
        }
        base = input.value as Record<string, unknown>;
      }
      const request = validateRolloutRequest(buildRolloutRequest(opts, base), input?.source, input?.locate);
      const api = ctx.api();
      const created =
        opts.signKey === undefined ? await api.createRollout(request) : await createSigned(ctx, opts, request, keys);
      if (opts.json) {
        writeJson(ctx.output, created);
        return;
      }
      ctx.output.out(created.rollout.id);
      const plan = await api.rolloutPlan(created.rollout.id);
      const needs = created.rollout.request.requiredApprovals;
      ctx.output.out(
        oneLine`state ${created.rollout.state}${created.rollout.state === 'awaiting_approval' ? oneLine` (needs ${needs} approval${needs === 1 ? '' : 's'} from someone other than ${created.rollout.createdBy})` : ''}`,
      );
      ctx.output.out(renderPlan(plan));
    });
}

/**
 * `create --sign-key`: the key and the patch are checked before anything is created; the rollout is
 * created as a draft, signed, and submitted unless `--draft` was asked for. A draft left behind
 * because signing failed is said so (it sends nothing; abort it or sign it again).
 */
async function createSigned(
  ctx: CliContext,
  opts: CreateOptions,
  request: ReturnType<typeof validateRolloutRequest>,
  keys: () => KeyEnvironment,
): Promise<RolloutStatus> {
  if (opts.patchFile === '-' && opts.file === '-') {
    throw new LocalValidationError('--patch-file and --file cannot both read stdin', []);
  }
  const key = await loadKey(opts, keys);
  const local =
    opts.patchFile === undefined
      ? undefined
      : await readInputDocument(opts.patchFile, ctx.readStdin).then((doc) =>
          patchSpecOf(NewPatchSchema.parse(validatePatchSpec(doc.value, doc.source, doc.locate))),
        );
  const api = ctx.api();
  const spec = checkPatchAgainstFile(await api.getPatch(request.patchId), local, opts.patchFile);
  const draft = await api.createRollout({ ...request, draft: true });
  try {
    return await signNewRollout(ctx, api, draft, spec, key, {
      validFor: opts.validFor ?? DEFAULT_STATEMENT_VALIDITY_SECONDS,
      submit: request.draft !== true,
    });
  } catch (err) {
    ctx.output.err(oneLine`rollout ${draft.rollout.id} was created as a draft and is not signed (it sends nothing)`);
    throw err;
  }
}
