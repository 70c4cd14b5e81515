import type { JoinTokenView } from '@fleetpatch/shared';
import { type Command, InvalidArgumentError } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { writeJson } from '../cli-output.js';
import { formatLabels, renderTable } from '../render-table.js';
import { collectLabel } from '../rollout-options.js';
import { oneLine } from '../terminal-text.js';

interface CreateOptions extends JsonFlag {
  uses: number;
  expires: number;
  label: Record<string, string>;
  host?: string;
  replace?: boolean;
  description?: string;
}

/** "1h", "30m", "7d", "3600" (seconds) → seconds. */
export function parseDuration(value: string): number {
  const match = /^(\d+)([smhd]?)$/.exec(value.trim());
  if (!match) throw new InvalidArgumentError('expected a duration such as 30m, 1h, 7d or seconds');
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as '' | 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

function parseUses(value: string): number {
  const uses = Number(value);
  if (!Number.isInteger(uses) || uses < 1) throw new InvalidArgumentError('expected a whole number of uses, 1 or more');
  return uses;
}

export function renderJoinTokens(tokens: readonly JoinTokenView[]): string {
  if (tokens.length === 0) return 'no join tokens (fleetpatch join-token create)';
  return renderTable(
    ['id', 'state', 'uses', 'expires', 'host', 'labels', 'created by'],
    tokens.map((t) => [
      t.id,
      t.state,
      `${t.uses}/${t.maxUses}`,
      t.expiresAt,
      t.hostId ? `${t.hostId}${t.replace ? ' (replace)' : ''}` : '-',
      formatLabels(t.labels),
      t.createdBy,
    ]),
  );
}

/** Join tokens: how agents enroll. Admin only; the secret is printed once. */
export function addJoinTokenCommands(program: Command, ctx: CliContext): void {
  const joinToken = program.command('join-token').description('issue, list and revoke the tokens agents enroll with');

  joinToken
    .command('create')
    .description('issue a join token and print it once (only its hash is kept)')
    .option('--uses <n>', 'how many agents may enroll with it', parseUses, 1)
    .option('--expires <duration>', 'how long it works: 30m, 1h, 7d (at most 30d)', parseDuration, 3600)
    .option('--label <key=value>', 'a label every agent enrolled with it carries (repeatable)', collectLabel, {})
    .option('--host <id>', 'only this host id may enroll with it')
    .option('--replace', 'let --host enroll again with a new key (its old key stops working)')
    .option('--description <text>', 'what it is for, shown in the list')
    .option('--json', 'print the raw JSON')
    .action(async (opts: CreateOptions) => {
      const created = await ctx.api().createJoinToken({
        uses: opts.uses,
        expiresInSeconds: opts.expires,
        labels: opts.label,
        ...(opts.host ? { hostId: opts.host } : {}),
        ...(opts.replace ? { replace: true } : {}),
        ...(opts.description ? { description: opts.description } : {}),
      });
      if (opts.json) {
        writeJson(ctx.output, created);
        return;
      }
      // The secret alone on stdout so that `fleetpatch join-token create > /etc/fleetpatch/join-token` works.
      ctx.output.out(created.token);
      ctx.output.err(
        oneLine`join token ${created.id}: ${created.maxUses} use(s) until ${created.expiresAt}; shown once — put it in the agent's joinTokenFile`,
      );
    });

  joinToken
    .command('list')
    .description('every join token: state, uses, expiry, host, labels (never the secret)')
    .option('--json', 'print the raw JSON')
    .action(async (opts: JsonFlag) => {
      const list = await ctx.api().listJoinTokens();
      if (opts.json) writeJson(ctx.output, list);
      else ctx.output.out(renderJoinTokens(list.joinTokens));
    });

  joinToken
    .command('revoke')
    .description('stop a join token working at once (agents already enrolled with it are not affected)')
    .argument('<id>', 'join token id (jt_…)')
    .option('--json', 'print the raw JSON')
    .action(async (id: string, opts: JsonFlag) => {
      const revoked = await ctx.api().revokeJoinToken(id);
      if (opts.json) writeJson(ctx.output, revoked);
      else ctx.output.out(oneLine`join token ${revoked.id} revoked`);
    });
}
