/** The channels coordinators wake each other on: a wake-up only, never the truth (the rows are). */
export const NotifyChannel = {
  /** A rollout may move: its payload is the rollout id; its driver advances it. */
  wake: 'fleetpatch_wake',
  /** Rows were added to the agent outbox: whoever holds those agents' sockets claims them. */
  outbox: 'fleetpatch_outbox',
  /** Events were committed: every coordinator's event tail reads on. */
  events: 'fleetpatch_events',
} as const;
export type NotifyChannelName = (typeof NotifyChannel)[keyof typeof NotifyChannel];
