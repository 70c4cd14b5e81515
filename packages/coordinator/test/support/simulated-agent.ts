import {
  type CoordinatorMessage,
  type Facts,
  type Hello,
  type OrderPhase,
  type OrderResultBody,
  PROTOCOL_VERSION,
} from '@fleetpatch/shared';

/** What a simulated agent's journal holds about one order. */
export interface JournalEntry {
  orderId: string;
  kind: 'apply' | 'revert';
  revertsOrderId: string | null;
  phase: OrderPhase;
  /** Whether this apply order's change is on the host now (the agent is the truth). */
  changed: boolean;
  result: OrderResultBody | null;
  acked: boolean;
}

/**
 * A tiny agent: journals every order it receives, answers only when told to, forgets nothing, and
 * answers an order id it already holds from its journal instead of running it again.
 */
export class SimulatedAgent {
  readonly journal = new Map<string, JournalEntry>();
  readonly cancels: string[] = [];
  online = false;
  /** The protocol its connection agreed on: this build's unless a test makes it an older agent. */
  protocolVersion = PROTOCOL_VERSION;
  /** Orders delivered again under an id the journal already knew. */
  redeliveries = 0;

  constructor(
    readonly id: string,
    readonly labels: Record<string, string>,
    readonly facts: Facts,
  ) {}

  /** Takes a delivered frame; returns the entry of a re-delivered order id (which is not run again). */
  receive(message: CoordinatorMessage): JournalEntry | undefined {
    switch (message.type) {
      case 'order.apply':
      case 'order.revert': {
        const known = this.journal.get(message.orderId);
        if (known) {
          this.redeliveries++;
          return known;
        }
        this.journal.set(message.orderId, {
          orderId: message.orderId,
          kind: message.type === 'order.apply' ? 'apply' : 'revert',
          revertsOrderId: message.type === 'order.revert' ? message.revertsOrderId : null,
          phase: message.type === 'order.apply' ? 'accepted' : 'reverting',
          changed: false,
          result: null,
          acked: false,
        });
        return undefined;
      }
      case 'order.cancel':
        this.cancels.push(message.orderId);
        return undefined;
      case 'order.ack': {
        const entry = this.journal.get(message.orderId);
        if (entry?.result) entry.acked = true;
        return undefined;
      }
      default:
        return undefined;
    }
  }

  /** The latest apply order this agent holds without a result. */
  /** The latest apply order received, answered or not. */
  latestApply(): JournalEntry | undefined {
    return [...this.journal.values()].filter((e) => e.kind === 'apply').at(-1);
  }

  openApply(): JournalEntry | undefined {
    return [...this.journal.values()].filter((e) => e.kind === 'apply' && e.result === null).at(-1);
  }

  openReverts(): JournalEntry[] {
    return [...this.journal.values()].filter((e) => e.kind === 'revert' && e.result === null);
  }

  /** The acks this agent got were lost (it crashed before writing them down). */
  forgetAcks(): void {
    for (const entry of this.journal.values()) entry.acked = false;
  }

  applyIds(): string[] {
    return [...this.journal.values()].filter((e) => e.kind === 'apply').map((e) => e.orderId);
  }

  unanswered(kind: JournalEntry['kind']): number {
    let n = 0;
    for (const entry of this.journal.values()) if (entry.kind === kind && entry.result === null) n++;
    return n;
  }

  /** Its hello: every journal entry not acked yet, or only those whose bit is set in `mask`. */
  hello(mask = -1): Hello {
    return {
      type: 'hello',
      protocolVersion: 1,
      // The hub checks the proof before the engine hears of the agent; the engine never reads it.
      proof: 'sim',
      agentVersion: 'sim',
      labels: this.labels,
      facts: this.facts,
      orders: [...this.journal.values()]
        .filter((e) => !e.acked)
        .filter((_, i) => (mask >> i) & 1)
        .map((e) => ({ orderId: e.orderId, phase: e.phase, ...(e.result ? { result: e.result } : {}) })),
    };
  }
}
