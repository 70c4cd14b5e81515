import type { EventPage, EventRecord } from '@fleetpatch/shared';
import type { Command } from 'commander';
import type { CliContext, JsonFlag } from '../cli-context.js';
import { UsageError } from '../cli-errors.js';
import { writeJson } from '../cli-output.js';
import { renderEvent } from '../render-events.js';
import { followRolloutEvents } from '../rollout-event-stream.js';
import { parseWholeNumber } from '../rollout-options.js';
import { oneLine } from '../terminal-text.js';

const PAGE = 500;

export function addEventsCommand(program: Command, ctx: CliContext): void {
  program
    .command('events')
    .description("the audit trail: a rollout's transitions and human actions, or without an id every event")
    .argument('[rolloutId]', 'rollout id (omit for every event: agents, patches, rollouts)')
    .option('--after <seq>', 'only events after this sequence number', parseWholeNumber, 0)
    .option('-f, --follow', 'keep streaming new events (Ctrl-C to stop)')
    .option('--json', 'print raw JSON (one object per line with --follow)')
    .action(async (rolloutId: string | undefined, opts: JsonFlag & { after: number; follow?: boolean }) => {
      const api = ctx.api();
      if (opts.follow && rolloutId === undefined) throw new UsageError('--follow needs a rollout id');
      if (opts.follow && rolloutId !== undefined) {
        // Runs until interrupted; the stream replays the backlog first, then follows live.
        let lost = false;
        await followRolloutEvents(api, rolloutId, {
          after: opts.after,
          signal: new AbortController().signal,
          onEvent: (event) => ctx.output.out(opts.json ? JSON.stringify(event) : renderEvent(event)),
          onConnect: () => {
            if (lost) ctx.output.err('event stream reconnected');
            lost = false;
          },
          onDisconnect: (reason) => {
            if (!lost) ctx.output.err(oneLine`event stream lost (${reason}); reconnecting…`);
            lost = true;
          },
        });
        return;
      }
      const all: EventRecord[] = [];
      let after: number | null = opts.after;
      while (after !== null) {
        const page: EventPage =
          rolloutId === undefined
            ? await api.auditEvents(after, PAGE)
            : await api.rolloutEvents(rolloutId, after, PAGE);
        if (opts.json) all.push(...page.events);
        else for (const event of page.events) ctx.output.out(renderEvent(event));
        after = page.next;
      }
      if (opts.json) writeJson(ctx.output, { events: all });
    });
}
