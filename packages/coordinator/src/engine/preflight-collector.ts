import {
  type CoordinatorMessage,
  ErrorCode,
  type OrderPreflight,
  type OrderResultBody,
  type PreflightAnswer,
  protocolGapOf,
} from '@fleetpatch/shared';
import { boundedHealth } from './bounded-health.js';
import type { AgentChannel } from './engine-interfaces.js';
import { newId } from './ids.js';

export const PREFLIGHT_ORDER_PREFIX = 'pf_';

/** What every host of a dry run is asked alike. */
export type PreflightBody = Omit<OrderPreflight, 'type' | 'orderId' | 'answerWithinMs'>;

interface Pending {
  hostId: string;
  resolve(answer: PreflightAnswer): void;
}

/**
 * Dry runs: asks agents to check a change's preconditions without changing anything, and gathers
 * their answers. Nothing is stored — a dry run is a question, not a transition.
 */
export class PreflightCollector {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly channel: AgentChannel) {}

  /**
   * Asks each host about `order`: its change, whether the rollout is signed (an agent that requires
   * signed orders says so) and the health checks whose baseline the apply would run.
   */
  async run(hostIds: readonly string[], order: PreflightBody, timeoutMs: number): Promise<PreflightAnswer[]> {
    return Promise.all(hostIds.map((hostId) => this.ask(hostId, order, timeoutMs)));
  }

  /**
   * The agent's connection closed: what it was asked cannot be answered on it, so every question
   * pending for it is answered `offline` now rather than at the dry run's timeout.
   */
  agentGone(agentId: string): void {
    for (const [orderId, pending] of this.pending) {
      if (pending.hostId !== agentId) continue;
      this.pending.delete(orderId);
      pending.resolve({
        hostId: agentId,
        outcome: 'offline',
        reason: 'agent disconnected before answering',
        errorCode: 'offline',
      });
    }
  }

  /** Takes an agent's answer if it is one of ours; returns false for every other result. */
  accept(agentId: string, result: OrderResultBody): boolean {
    if (!result.orderId.startsWith(PREFLIGHT_ORDER_PREFIX)) return false;
    const pending = this.pending.get(result.orderId);
    if (!pending || pending.hostId !== agentId) return true;
    this.pending.delete(result.orderId);
    pending.resolve({
      hostId: agentId,
      outcome: result.outcome,
      reason: result.reason ?? null,
      errorCode: result.errorCode ?? null,
      ...(result.packages ? { packages: result.packages } : {}),
      ...(result.preconditions ? { preconditions: result.preconditions } : {}),
      ...(result.health ? { health: boundedHealth(result.health) } : {}),
    });
    return true;
  }

  private ask(hostId: string, order: PreflightBody, timeoutMs: number): Promise<PreflightAnswer> {
    // Not asked at all: an agent too old for the change would refuse the order (see change-protocol.ts).
    // Its health checks count too: the hub would not send a tolerance an older agent cannot read.
    const gap = protocolGapOf({ change: order.change, health: order.health }, this.channel.protocolVersionOf(hostId));
    if (gap !== undefined) {
      return Promise.resolve({
        hostId,
        outcome: 'incompatible',
        reason: gap,
        errorCode: ErrorCode.preconditionFailed,
      });
    }
    const orderId = newId(PREFLIGHT_ORDER_PREFIX.slice(0, -1));
    const message: CoordinatorMessage = { type: 'order.preflight', orderId, ...order, answerWithinMs: timeoutMs };
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(orderId);
        resolve({ hostId, outcome: 'no_answer', reason: `no answer within ${timeoutMs} ms`, errorCode: null });
      }, timeoutMs);
      this.pending.set(orderId, {
        hostId,
        resolve: (answer) => {
          clearTimeout(timer);
          resolve(answer);
        },
      });
      if (!this.channel.send(hostId, message)) {
        clearTimeout(timer);
        this.pending.delete(orderId);
        resolve({ hostId, outcome: 'offline', reason: 'agent is not connected', errorCode: 'offline' });
      }
    });
  }
}
