import {
  type ChangeRecordField,
  type ChangeRecordView,
  describeChange,
  describePrecondition,
  type HealthCheck,
  isRevertable,
  missingRecordFields,
  type Patch,
  type PrometheusAnalysis,
  type RollbackTrigger,
} from '@fleetpatch/shared';
import type { PromotionConfig } from '../config.js';
import type { Store } from '../store/store.js';
import { historyEntries } from './patch-history.js';

/**
 * The change request of a patch as a change advisory board reads it: what and why, the evidence
 * (the author's links and, added here, every rollout of the same content that succeeded and was not
 * reverted since), how it is taken back, the risk, and what would trigger a rollback — read from the
 * patch's health checks and its rollouts' analyses and revert scopes, never typed by hand.
 */
export async function changeRecordView(
  store: Store,
  patch: Patch,
  options: { policy: PromotionConfig | undefined; required: readonly ChangeRecordField[] },
): Promise<ChangeRecordView> {
  const record = patch.record;
  return {
    patch: {
      id: patch.id,
      title: patch.title,
      ticket: patch.ticket,
      createdBy: patch.createdBy,
      createdAt: patch.createdAt,
      contentDigest: patch.contentDigest,
      problem: patch.problem,
      rootCause: patch.rootCause,
      intendedFix: patch.intendedFix,
      change: describeChange(patch.change),
      requires: (patch.change.requires ?? []).map(describePrecondition),
      revertable: isRevertable(patch.change),
    },
    validation: record?.validation ?? [],
    validatedBy: (await historyEntries(store, patch.contentDigest, options.policy))
      .filter((entry) => entry.rollout.state === 'succeeded' && !entry.rollout.reverted)
      .map((entry) => ({
        ...entry.rollout,
        environments: entry.environments.map((env) => env ?? '(unlabelled)'),
      })),
    rollbackPlan: record?.rollbackPlan ?? null,
    risk: record?.risk ?? null,
    rollbackTriggers: await rollbackTriggers(store, patch),
    missing: missingRecordFields(record, options.required),
  };
}

async function rollbackTriggers(store: Store, patch: Patch): Promise<RollbackTrigger[]> {
  const { health } = patch;
  const triggers: RollbackTrigger[] = health.checks.map((check) => ({
    source: 'health',
    description: `${describeCheck(check)} must pass on each host within ${health.healthyDeadlineSeconds} s of apply${health.minHealthySeconds > 0 ? `, held ${health.minHealthySeconds} s` : ''}`,
  }));
  for (const rollout of await store.rollouts.ofPatches([patch.id])) {
    for (const analysis of rollout.request.analyses) {
      triggers.push({ source: 'analysis', rolloutId: rollout.id, description: describeAnalysis(analysis) });
    }
    triggers.push({
      source: 'autoRevert',
      rolloutId: rollout.id,
      description:
        rollout.request.autoRevert === 'none'
          ? 'a failure is left in place for a person (autoRevert none)'
          : `a failure reverts the ${rollout.request.autoRevert} (autoRevert ${rollout.request.autoRevert})`,
    });
  }
  return triggers;
}

function describeCheck(check: HealthCheck): string {
  const name = check.name ? `"${check.name}" ` : '';
  switch (check.kind) {
    case 'command':
      return `command check ${name}(${check.argv.join(' ')} exits 0)`;
    case 'http':
      return `http check ${name}(${check.url} answers ${check.expectStatus.min}-${check.expectStatus.max}${check.bodyContains === undefined ? '' : ` containing "${check.bodyContains}"`})`;
    case 'tcp':
      return `tcp check ${name}(${check.host}:${check.port} accepts)`;
    case 'systemd':
      return `systemd check ${name}(${check.unit} active)`;
    case 'process':
      return `process check ${name}(${check.processName} running)`;
    case 'file':
      return `file check ${name}(${check.path}${check.sha256 ? ` has sha256 ${check.sha256.slice(0, 12)}` : ' exists'})`;
    case 'metric':
      return `metric check ${name}(${check.metric}${check.mount ? ` on ${check.mount}` : ''} ≤ ${check.max}%)`;
  }
}

function describeAnalysis(analysis: PrometheusAnalysis): string {
  const baseline = analysis.baselineQuery ? ` where baseline = ${analysis.baselineQuery}` : '';
  return `analysis "${analysis.name}": ${analysis.query} ${analysis.condition}${baseline} (Prometheus, every ${analysis.intervalSeconds} s, ${analysis.count} measurements per wave, fails the wave after ${analysis.failureLimit + 1} failed; inconclusive: ${analysis.inconclusive})`;
}
