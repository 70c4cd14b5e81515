/**
 * The apply and revert orders sent on this coordinator's sockets whose results have not come back,
 * counted across connections. It tells the engine whether a report has company coming: a burst of
 * reports waits a few milliseconds to share one commit only while some order still owes its result,
 * so a wave's last result (or a lone canary's) is recorded at once instead of waiting for nobody.
 *
 * A hint, never a rule: an order whose answer is lost with its connection stops being awaited, and
 * one whose agent never answers (it is stopping, or stuck) stays awaited until its connection closes.
 * Either way a burst is written a few milliseconds sooner or later, never wrongly.
 */
export class AwaitedResults {
  private count = 0;

  /** An order went out on a connection (`orders` is that connection's own set); a resend counts once. */
  sent(orders: Set<string>, orderId: string): void {
    if (orders.has(orderId)) return;
    orders.add(orderId);
    this.count++;
  }

  /** A result came in on the connection. */
  answered(orders: Set<string>, orderId: string): void {
    if (orders.delete(orderId)) this.count--;
  }

  /** The connection closed: its orders' answers, if any, will come on another. */
  closed(orders: Set<string>): void {
    this.count -= orders.size;
    orders.clear();
  }

  any(): boolean {
    return this.count > 0;
  }
}
