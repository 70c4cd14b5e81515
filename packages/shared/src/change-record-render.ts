import type { ChangeRecordView, PatchHistoryRollout } from './promotion-views.js';
import { escapeControlCharacters } from './validation.js';

/**
 * The change record as a document: Markdown for a change-management system (`GET
 * /v1/patches/:id/record?format=md`), plain text for a terminal (`fleetpatch patch show`). Same
 * sections either way. Every text is an author's: control characters are shown escaped, and in
 * Markdown the characters that would make markup (links, HTML, emphasis, tables) are escaped too,
 * so a record can neither recolour a terminal nor inject a link into a ticket.
 */
export type RecordFormat = 'markdown' | 'text';

export function renderChangeRecord(view: ChangeRecordView, format: RecordFormat): string {
  const md = format === 'markdown';
  const t = (text: string) => inline(text, md);
  const lines: string[] = [];
  const heading = (title: string) => lines.push('', md ? `## ${title}` : title.toUpperCase());
  const item = (text: string) => lines.push(`- ${multiline(text, md)}`);
  const { patch } = view;

  lines.push(md ? `# Change request: ${t(patch.title)}` : `CHANGE REQUEST ${patch.id}: ${t(patch.title)}`);
  lines.push('');
  const field = (name: string, value: string) =>
    lines.push(md ? `- **${name}:** ${value}` : `  ${name.padEnd(15)}${value}`);
  field('Patch', md ? `\`${patch.id}\`` : patch.id);
  field('Ticket', t(patch.ticket));
  field('Requested by', `${t(patch.createdBy)} at ${patch.createdAt}`);
  field('Change', t(patch.change));
  for (const precondition of patch.requires) field('Requires', t(precondition));
  field('Content digest', md ? `\`${patch.contentDigest}\`` : patch.contentDigest);
  field('Risk', view.risk ? view.risk.level.toUpperCase() : 'not assessed');
  if (view.missing.length > 0) {
    field(
      'INCOMPLETE',
      `required field(s) empty: ${view.missing.join(', ')} — no rollout of it is approved or started`,
    );
  }

  heading('Problem');
  lines.push(multiline(patch.problem, md));
  heading('Root cause');
  lines.push(multiline(patch.rootCause, md));
  heading('Intended fix');
  lines.push(multiline(patch.intendedFix, md));

  heading('Risk');
  if (view.risk) lines.push(`${view.risk.level.toUpperCase()}: ${multiline(view.risk.impact, md)}`);
  else lines.push('not assessed');

  heading('Validation');
  if (view.validation.length === 0 && view.validatedBy.length === 0) lines.push('no evidence given');
  // Built from escaped parts: pushed as they are.
  for (const link of view.validation) {
    lines.push(`- ${md ? `[${t(link.title)}](${safeUrl(link.url)})` : `${t(link.title)} <${t(link.url)}>`}`);
  }
  for (const rollout of view.validatedBy) {
    lines.push(`- ${describeRollout(rollout, rollout.environments.map(t), md, patch.id)}`);
  }

  heading('Rollback plan');
  if (!patch.revertable) lines.push('The coordinator will NOT revert this change (marked "revertable": false).');
  if (view.rollbackPlan) {
    view.rollbackPlan.steps.forEach((step, index) => {
      lines.push(`${index + 1}. ${multiline(step, md)}`);
    });
    const irreversible = view.rollbackPlan.irreversible ?? [];
    if (irreversible.length > 0) {
      lines.push('', md ? '**Cannot be reversed:**' : 'CANNOT BE REVERSED:');
      for (const part of irreversible) item(part);
    } else lines.push('', 'Every part is reversible.');
  } else lines.push('no documented plan');

  heading('Rollback triggers');
  if (view.rollbackTriggers.length === 0) lines.push('none: no health check, analysis or rollout yet');
  for (const trigger of view.rollbackTriggers) {
    item(`${trigger.source}${trigger.rolloutId ? ` (${trigger.rolloutId})` : ''}: ${trigger.description}`);
  }
  return `${lines.join('\n').trim()}\n`;
}

function describeRollout(
  rollout: PatchHistoryRollout,
  environments: readonly string[],
  md: boolean,
  patchId: string,
): string {
  const id = md ? `\`${rollout.rolloutId}\`` : rollout.rolloutId;
  const of = rollout.patchId === patchId ? '' : ` of ${rollout.patchId} (same content)`;
  return `rollout ${id}${of} succeeded on ${environments.join(', ') || 'no labelled environment'} (${rollout.hostCount} ${rollout.hostCount === 1 ? 'host' : 'hosts'}), finished ${rollout.finishedAt ?? '?'}${rollout.overridden ? ', started by an admin override of the promotion order' : ''}`;
}

/** One line of author text: control characters escaped, and in Markdown the markup characters too. */
function inline(text: string, md: boolean): string {
  const safe = escapeControlCharacters(text);
  return md ? escapeMarkdown(safe) : safe;
}

/** A multi-line author text: newlines kept (indented under a list item), other controls escaped. */
function multiline(text: string, md: boolean): string {
  const safe = escapeControlCharacters(text, ['\n', '\t']);
  return (md ? escapeMarkdown(safe) : safe).split('\n').join('\n  ');
}

function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_[\]<>|#!~]/g, (c) => `\\${c}`);
}

/** A URL inside `( )`: the characters that could end it or open markup are percent-encoded. */
function safeUrl(url: string): string {
  return url.replace(/[()<>\s\\[\]`]/g, (c) =>
    encodeURIComponent(c).replace(/[()]/g, (p) => (p === '(' ? '%28' : '%29')),
  );
}
