import { z } from 'zod';

/**
 * Protocol versions, and how two peers agree on one.
 *
 * - **1**: the first protocol. `hello` names exactly one version (`protocolVersion`); every frame was
 *   parsed `.strict()`, so a peer adding a field was disconnected.
 * - **2**: `hello` names the range the agent speaks (`protocolVersions: {min, max}`), `welcome` the
 *   version the coordinator chose; unknown fields are ignored; a message type the receiver does not
 *   know is answered with `unsupported` (new in 2) instead of a disconnect.
 * - **3**: the package inventory (inventory.ts): `inventory.summary`, `.full`, `.diff` and
 *   `.unavailable` from the agent, `inventory.request` from the coordinator. A peer of protocol 2 or
 *   older is sent none of them; the coordinator shows its packages as unknown.
 * - **4**: package sets (change-protocol.ts): a package change names `packages: [{name, version}]` or
 *   `source` + `version`; results carry the set as resolved on the host (`packages`) and may end
 *   `not_applicable`. An agent of protocol 3 or older would refuse such a change (its change schema
 *   is strict), so the coordinator sends it none: a dry run answers `incompatible`, a rollout fails
 *   that host with the reason (upgrade the agent), and its plan lists it.
 * - **5**: host preconditions (change-protocol.ts): a change may carry `requires`, which the agent
 *   checks at preflight and before its snapshot at apply (`precondition_failed`). Sent only to
 *   agents of protocol 5, as protocol 4 features are.
 * - **6**: health tolerance (change-protocol.ts): a health policy may name `failAfterConsecutive`
 *   (fail fast while verifying) and `bakeTolerance`; `order.progress` carries `failingPolls`, the
 *   polls in a row with a failing check. An agent of protocol 5 or older would refuse such a policy
 *   (its health schema is strict), so the coordinator sends it none, as for protocols 4 and 5; a policy
 *   without them goes to every agent as before.
 * - **7**: the heartbeat is a WebSocket ping (`HEARTBEAT_PING_PROTOCOL`). The agent pings once an
 *   interval with its journal position as the ping's data (`heartbeatPingData`), the coordinator's
 *   WebSocket answers with the pong the standard requires, and the coordinator pings such an agent
 *   only when an interval went by without a word from it. Two frames an interval where protocol 6
 *   and older take three (the agent's `heartbeat` message, the coordinator's ping, the agent's pong),
 *   for a fleet that mostly sits idle. A peer of 6 or older sends and is sent what it did before.
 *
 * A coordinator speaks every version from `MIN_PROTOCOL_VERSION` to `PROTOCOL_VERSION`, so it is
 * upgraded first and agents follow in waves. An agent speaks the same range unless its
 * `minProtocolVersion` raises the floor.
 */
export const PROTOCOL_VERSION = 7;
/** The oldest version this build still speaks: agents of that protocol keep working with it. */
export const MIN_PROTOCOL_VERSION = 1;

export const ProtocolVersionSchema = z.number().int().min(1).max(1000);

export const ProtocolRangeSchema = z
  .object({ min: ProtocolVersionSchema, max: ProtocolVersionSchema })
  .strict()
  .refine((range) => range.min <= range.max, 'min must not be above max');
export type ProtocolRange = z.infer<typeof ProtocolRangeSchema>;

export const SUPPORTED_PROTOCOL_VERSIONS: ProtocolRange = { min: MIN_PROTOCOL_VERSION, max: PROTOCOL_VERSION };

/**
 * The highest version both ranges contain, or undefined when they do not overlap. The coordinator
 * decides; the agent checks the answer falls in its own range (see `minProtocolVersion`).
 */
export function negotiateProtocolVersion(ours: ProtocolRange, theirs: ProtocolRange): number | undefined {
  const best = Math.min(ours.max, theirs.max);
  return best >= Math.max(ours.min, theirs.min) ? best : undefined;
}

export function inProtocolRange(version: number, range: ProtocolRange): boolean {
  return version >= range.min && version <= range.max;
}

/** "1-2", or "2" for a single version: how refusals and logs name a range. */
export function formatProtocolRange(range: ProtocolRange): string {
  return range.min === range.max ? `${range.min}` : `${range.min}-${range.max}`;
}
