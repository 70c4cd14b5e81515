/**
 * When to send a result again that the coordinator has not acknowledged, while the connection stays up.
 *
 * A result is sent when its order ends, in a hello, or paged in after one; the coordinator acks it once
 * it is stored. Nearly always the ack comes within moments. When it does not — the coordinator's store
 * refused that one report three times and dropped it, or the ack was lost to a coordinator restart
 * between its commit and the ack — the journal still holds the result unacknowledged, and before this
 * only the next reconnect's hello carried it again: on a quiet connection, never, while its host run met
 * its deadline on the coordinator. Now it is sent again after `baseMs`, then after twice that, and so on
 * up to `maxMs` between tries: a result the store keeps refusing costs the coordinator one try per
 * `maxMs`, not a loop. The coordinator records a result it already holds as a repeat and acks it again.
 *
 * Only the timing is here; the agent asks `due` on a timer and sends what the journal still holds
 * unacknowledged (see Agent).
 */
export class ResultResend {
  /** Per order: when its result was last sent, and how long to wait from then. */
  private readonly sent = new Map<string, { at: number; waitMs: number }>();

  constructor(
    private readonly baseMs: number,
    private readonly maxMs: number,
  ) {}

  /** The result of `orderId` went out at `now` (its order ended, or a hello or a page carried it). */
  sentAt(orderId: string, now: number): void {
    this.sent.set(orderId, { at: now, waitMs: this.baseMs });
  }

  /** Acknowledged, or no longer in the journal: nothing more to send. */
  forget(orderId: string): void {
    this.sent.delete(orderId);
  }

  /** A new connection's hello reports every unacknowledged result: the waits start again from it. */
  clear(): void {
    this.sent.clear();
  }

  /**
   * The orders whose results are due again at `now`, at most `limit` of them, oldest first; each is
   * counted as sent again now, and waits twice as long (up to `maxMs`) before its next try.
   */
  due(now: number, limit: number): string[] {
    const due: string[] = [];
    for (const [orderId, { at, waitMs }] of this.sent) {
      if (due.length >= limit) break;
      if (now - at < waitMs) continue;
      due.push(orderId);
    }
    for (const orderId of due) {
      const { waitMs } = this.sent.get(orderId) as { waitMs: number };
      // Re-inserted: the map's order stays the order of the last try, so the oldest are asked first.
      this.sent.delete(orderId);
      this.sent.set(orderId, { at: now, waitMs: Math.min(waitMs * 2, this.maxMs) });
    }
    return due;
  }

  /** How many results wait for an ack (for tests and the agent's metrics). */
  get size(): number {
    return this.sent.size;
  }
}
