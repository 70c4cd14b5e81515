import {
  ORDER_REFUSED_EVENT,
  type OrderRefusedData,
  type OrderResultBody,
  orderRefusalCodeOf,
} from '@fleetpatch/shared';
import type { HostRunRecord } from '../store/host-run-repository.js';
import type { EngineDeps } from './engine-interfaces.js';
import { isoNow } from './rollout-transition.js';

/**
 * An agent refused an order before running it — a signature that does not hold (`tampered`,
 * `unsigned`, `replayed`, …) or a rule of its local policy (`policy_denied`). With signing on,
 * that is what an altered database or a coordinator in the wrong hands looks like from the
 * outside, so each refusal is a security event of its own in the audit trail (beside the host's
 * `host.failed`), and a warning in the log. Must run inside the transaction that records the result.
 */
export async function auditOrderRefusal(
  deps: Pick<EngineDeps, 'store' | 'clock' | 'log'>,
  agentId: string,
  run: Pick<HostRunRecord, 'rolloutId' | 'hostId'>,
  result: OrderResultBody,
  order: OrderRefusedData['order'],
): Promise<void> {
  const code = orderRefusalCodeOf(result.errorCode, result.reason);
  if (code === undefined) return;
  const data: OrderRefusedData = { orderId: result.orderId, order, code, reason: result.reason ?? '' };
  await deps.store.appendEvent(
    { rolloutId: run.rolloutId, hostId: run.hostId, actor: agentId, type: ORDER_REFUSED_EVENT, data: { ...data } },
    isoNow(deps.clock),
  );
  deps.log.warn({ hostId: run.hostId, rolloutId: run.rolloutId, ...data }, 'agent refused an order: security event');
}
