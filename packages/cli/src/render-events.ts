import {
  type EventRecord,
  ORDER_REFUSED_EVENT,
  type OrderRefusedData,
  OrderRefusedDataSchema,
} from '@fleetpatch/shared';
import { printable } from './terminal-text.js';

/** One audit event per line: `#12 2025-01-01T00:00:00.000Z alice rollout.started [web-1] scheduled→running {…}`. */
export function renderEvent(event: EventRecord): string {
  const parts = [`#${event.seq}`, event.at, event.actor, event.type];
  if (event.hostId) parts.push(`[${event.hostId}]`);
  if (event.fromState || event.toState) parts.push(`${event.fromState ?? '-'}→${event.toState ?? '-'}`);
  const refused = event.type === ORDER_REFUSED_EVENT ? OrderRefusedDataSchema.safeParse(event.data) : undefined;
  if (refused?.success) parts.push(renderRefusal(refused.data));
  else if (event.data && Object.keys(event.data).length > 0) parts.push(JSON.stringify(event.data));
  // One line per event: the actor, host ids and data are the server's (and agents') text.
  return printable(parts.join(' '));
}

/**
 * A host refused an order (signature or policy): marked so it stands out in the trail, in words
 * rather than JSON. The reason is the agent's text: renderEvent shows its control characters escaped.
 */
function renderRefusal({ order, orderId, code, reason }: OrderRefusedData): string {
  const why = reason.startsWith(`${code}: `) ? reason : `${code}: ${reason}`;
  return `SECURITY: refused ${order} order ${orderId} — ${why}`;
}
