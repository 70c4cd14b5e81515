import {
  describePackageChange,
  describePrecondition,
  isRevertable,
  NOT_REVERTABLE_NOTE,
  type Patch,
} from '@fleetpatch/shared';
import { plural, renderTable } from './render-table.js';

export function describeChange(change: Patch['change']): string {
  switch (change.kind) {
    case 'file': {
      const prior = change.expectedPriorSha256 ? `, expects prior ${change.expectedPriorSha256.slice(0, 12)}` : '';
      return `file ${change.path} (mode ${change.mode}, ${change.owner}:${change.group}${prior})`;
    }
    case 'package':
      return `${describePackageChange(change)}${change.revertable ? '' : ', NOT revertable'}`;
  }
}

export function renderPatch(patch: Patch): string {
  return [
    `patch ${patch.id}: ${patch.title}`,
    `  ticket        ${patch.ticket}`,
    `  created       ${patch.createdAt} by ${patch.createdBy}`,
    `  change        ${describeChange(patch.change)}`,
    ...(patch.change.requires ?? []).map(
      (p, i) => `  ${i === 0 ? 'requires' : '        '}      ${describePrecondition(p)}`,
    ),
    ...(isRevertable(patch.change) ? [] : [`  revert        none: ${NOT_REVERTABLE_NOTE}`]),
    `  health        ${plural(patch.health.checks.length, 'check')}${patch.health.checks.length > 0 ? `: ${patch.health.checks.map((c) => c.name).join(', ')}` : ''}`,
    `  problem       ${patch.problem}`,
    `  root cause    ${patch.rootCause}`,
    `  intended fix  ${patch.intendedFix}`,
  ].join('\n');
}

export function renderPatchList(patches: readonly Patch[]): string {
  if (patches.length === 0) return 'no patches yet (fleetpatch patch create --file patch.json)';
  return renderTable(
    ['id', 'title', 'ticket', 'change', 'by', 'created'],
    patches.map((p) => [p.id, p.title, p.ticket, describeChange(p.change), p.createdBy, p.createdAt]),
  );
}
