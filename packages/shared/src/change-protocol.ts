import type { HealthPolicy } from './health-check.js';
import type { Change } from './patch.js';

/**
 * Protocol 4: a package change as a set (`packages`) or by source package (`source`), the
 * `not_applicable` outcome, and the resolved set (`packages`) in results; a change's `restart` lists
 * and the after-change report in results.
 */
export const PACKAGE_SETS_PROTOCOL = 4;

/** Protocol 6: a health policy's `failAfterConsecutive` and `bakeTolerance`; live failing-poll counts in progress. */
export const HEALTH_TOLERANCE_PROTOCOL = 6;

/** What an order asks of an agent: its change and, for an apply, the health policy it judges by. */
export interface OrderContent {
  change: Change;
  health?: HealthPolicy | undefined;
}

/** Whether `health` names a field only agents of `HEALTH_TOLERANCE_PROTOCOL` read. */
function usesHealthTolerance(health: HealthPolicy | undefined): boolean {
  return health?.failAfterConsecutive !== undefined || health?.bakeTolerance !== undefined;
}

/**
 * Protocol 5: a change's host preconditions (`requires`, preconditions.ts), checked by the agent at
 * preflight and before its snapshot at apply. An agent of protocol 4 or older would refuse the field
 * (its change schema is strict) rather than ignore it; the coordinator sends it none.
 */
export const PRECONDITIONS_PROTOCOL = 5;

/**
 * The lowest protocol whose agents understand an order's change and health policy. An agent's
 * change and health schemas are `.strict()` (it must never apply less than was approved), so an
 * older agent refuses an order with a field it does not know: the coordinator never sends it one
 * (see `protocolGapOf`).
 */
export function protocolNeededFor({ change, health }: OrderContent): number {
  if (usesHealthTolerance(health)) return HEALTH_TOLERANCE_PROTOCOL;
  if (change.requires !== undefined) return PRECONDITIONS_PROTOCOL;
  if (isPackageSet(change)) return PACKAGE_SETS_PROTOCOL;
  if (change.restart !== undefined) return PACKAGE_SETS_PROTOCOL;
  return 1;
}

/**
 * Why an agent speaking protocol `spoken` must not be sent `change`, for people (plan, preflight,
 * a host's failure reason); undefined when it may be sent, or when the agent's protocol is not known
 * (it is offline: the order waits, and is checked again when it says hello).
 */
export function protocolGapOf(order: OrderContent, spoken: number | undefined): string | undefined {
  const needed = protocolNeededFor(order);
  if (spoken === undefined || spoken >= needed) return undefined;
  return (
    `its agent speaks protocol ${spoken}; ${needsWhat(order)} needs protocol ${needed}: ` +
    'upgrade the agent (an older one cannot read the order)'
  );
}

function isPackageSet(change: Change): boolean {
  return change.kind === 'package' && (change.packages !== undefined || change.source !== undefined);
}

/** What in the order an older agent cannot read, for people. */
function needsWhat({ change, health }: OrderContent): string {
  if (usesHealthTolerance(health)) return 'a health policy with failAfterConsecutive or bakeTolerance';
  if (change.requires !== undefined) return 'a change with host preconditions (requires)';
  if (isPackageSet(change)) return 'a package set or source change';
  return 'a change with services to restart';
}
