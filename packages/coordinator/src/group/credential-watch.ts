import type { AgentHub } from '../hub/agent-hub.js';
import type { Store } from '../store/store.js';

/** The audit rows after which an agent's key may have changed (a removal revokes the key with it). */
const KEY_CHANGES: ReadonlySet<string> = new Set(['agent.revoked', 'agent.removed', 'agent.reenrolled']);

/**
 * A key revoked or replaced at one coordinator of a group must not keep a live session at another:
 * the coordinator that made the change cuts only its own connections. Every member reads every
 * committed event (the event tail feeds the store's stream), and after one that changes an agent's
 * key it cuts that agent's connection here unless it proved the key the store holds now — so a new
 * key's connection, made meanwhile, stays. Returns the unsubscribe.
 */
export function watchCredentialChanges(
  store: Store,
  hub: Pick<AgentHub, 'dropUnlessKey'>,
  background: (work: Promise<unknown>, what: string) => void,
): () => void {
  return store.onStreamEvent((event) => {
    const agentId = event.hostId;
    if (agentId === null || !KEY_CHANGES.has(event.type)) return;
    background(
      store.agents
        .publicKeyOf(agentId)
        .then((key) => hub.dropUnlessKey(agentId, key, 'agent credential revoked or replaced')),
      'cutting a connection whose credential changed',
    );
  });
}
