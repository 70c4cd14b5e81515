import {
  type EventRecord,
  ORDER_REFUSED_EVENT,
  type OrderRefusedData,
  OrderRefusedDataSchema,
} from '@fleetpatch/shared';
import { printable } from './terminal-text.js';

/** One audit event per line: `#12 2025-01-01T00:00:00.000Z alice wave.started wave 1 {…}` (waves 1-based). */
export function renderEvent(event: EventRecord): string {
  const parts = [`#${event.seq}`, event.at, event.actor, event.type];
  if (event.hostId) parts.push(`[${event.hostId}]`);
  if (event.fromState || event.toState) parts.push(`${event.fromState ?? '-'}→${event.toState ?? '-'}`);
  const refused = event.type === ORDER_REFUSED_EVENT ? OrderRefusedDataSchema.safeParse(event.data) : undefined;
  // The API counts waves from 0; a person reads `wave 1` for the first, as everywhere else in the CLI.
  const { wave, ...rest } = event.data ?? {};
  if (typeof wave === 'number') parts.push(`wave ${wave + 1}`);
  const data = typeof wave === 'number' ? rest : (event.data ?? {});
  if (refused?.success) parts.push(renderRefusal(refused.data));
  else if (Object.keys(data).length > 0) parts.push(JSON.stringify(data));
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
