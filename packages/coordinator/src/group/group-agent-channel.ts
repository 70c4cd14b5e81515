import type { CoordinatorMessage } from '@fleetpatch/shared';
import type { AgentChannel } from '../engine/engine-interfaces.js';
import type { AgentHub } from '../hub/agent-hub.js';
import type { AgentOutbox } from './agent-outbox.js';
import type { GroupPresence } from './group-presence.js';

/**
 * How the engine reaches an agent when coordinators share the work: straight down the socket when
 * the agent is connected here, else through the outbox to whichever coordinator holds it. A message
 * for an agent connected nowhere (as far as this coordinator knows) goes to the outbox too: the agent
 * may have connected elsewhere a moment ago, and the outbox reaches it there.
 */
export class GroupAgentChannel implements AgentChannel {
  constructor(
    private readonly hub: AgentHub,
    private readonly presence: GroupPresence,
    private readonly outbox: AgentOutbox,
  ) {}

  send(agentId: string, message: CoordinatorMessage): boolean {
    if (this.hub.isOnline(agentId)) return this.hub.send(agentId, message);
    this.outbox.enqueue(agentId, message);
    return this.presence.isOnlineElsewhere(agentId);
  }

  isOnline(agentId: string): boolean {
    return this.hub.isOnline(agentId) || this.presence.isOnlineElsewhere(agentId);
  }

  isOnlineElsewhere(agentId: string): boolean {
    return this.presence.isOnlineElsewhere(agentId);
  }

  /** Where every agent is connected now, as the group's rows say (not as of the last heartbeat). */
  async refreshPresence(): Promise<void> {
    await this.presence.refresh();
  }

  protocolVersionOf(agentId: string): number | undefined {
    return this.hub.protocolVersionOf(agentId) ?? this.presence.protocolVersionElsewhere(agentId);
  }
}
