import { type EventRecord, FINAL_ROLLOUT_STATES, type RolloutState } from '@fleetpatch/shared';
import type { Store } from '../store/store.js';
import type { WebhookEvent } from './webhook-notifier.js';

/** Audit rows about webhooks themselves are never sent as webhooks: a dead receiver must not feed itself. */
export const WEBHOOK_FAILED_EVENT = 'webhook.failed';

/**
 * The webhook events one committed audit row stands for: the row itself (type as in the audit
 * trail), and for a change-management system two summaries it can act on without knowing the
 * engine's states —
 * - `patch.approved`: a rollout of the patch has all its approvals (its record may now go ahead);
 * - `rollout.finished`: a rollout reached a final state (succeeded, halted, aborted, reverted, …).
 * Each carries the patch and the path of its change record (`GET` it for the Markdown).
 */
export async function webhookEventsFor(store: Store, event: EventRecord): Promise<WebhookEvent[]> {
  if (event.rolloutId === null || event.type.startsWith('webhook.')) return [];
  const rolloutId = event.rolloutId;
  const events: WebhookEvent[] = [
    {
      type: event.type,
      rolloutId,
      at: event.at,
      data: {
        seq: event.seq,
        actor: event.actor,
        hostId: event.hostId,
        fromState: event.fromState,
        toState: event.toState,
        ...event.data,
      },
    },
  ];
  const summary = async (type: string, data: Record<string, unknown>) => {
    const rollout = await store.rollouts.get(rolloutId);
    if (!rollout) return;
    events.push({
      type,
      rolloutId,
      at: event.at,
      data: {
        seq: event.seq,
        patchId: rollout.patchId,
        record: `/v1/patches/${rollout.patchId}/record`,
        ...data,
      },
    });
  };
  if (event.type === 'rollout.scheduled' && event.data?.reason === 'approved') {
    await summary('patch.approved', { approvers: (await store.rollouts.approvals(rolloutId)).map((a) => a.approver) });
  }
  // The rollout's own row: a host's `host.reverted` ends in a state of the same name, and is not the end
  // of the rollout.
  if (
    event.type.startsWith('rollout.') &&
    event.toState !== null &&
    FINAL_ROLLOUT_STATES.has(event.toState as RolloutState)
  ) {
    const rollout = await store.rollouts.get(rolloutId);
    await summary('rollout.finished', {
      state: event.toState,
      reason: event.data?.reason ?? null,
      hostCount: rollout?.hostCount ?? 0,
    });
  }
  return events;
}
