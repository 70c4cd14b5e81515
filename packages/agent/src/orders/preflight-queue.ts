/**
 * Dry runs, a few at a time. A dry run is unsigned, the coordinator's word alone, and reads what its
 * change names: a file of any size under the allowed roots is hashed whole, a package change runs
 * dpkg and apt. Hundreds at once (a stolen coordinator can send them for nothing) would share the
 * agent's one event loop until the health checks of a baking order timed out, and the host reverted a
 * healthy change nobody asked to revert. So at most `running` run at once and `waiting` more wait their
 * turn, in order; any more are turned away at once, to be answered blocked.
 */
export class PreflightQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly limits: { running: number; waiting: number } = { running: 2, waiting: 16 },
    /** Milliseconds on a monotonic clock (a test gives its own). */
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Runs `work` in its turn, telling it how long it waited; resolves false, without running it, when
   * as many dry runs as the limits allow are running and waiting already.
   */
  async run(work: (waitedMs: number) => Promise<void>): Promise<boolean> {
    const queued = this.now();
    if (this.running < this.limits.running) this.running++;
    else if (this.waiting.length < this.limits.waiting) await new Promise<void>((turn) => this.waiting.push(turn));
    else return false;
    try {
      await work(this.now() - queued);
    } finally {
      // The slot goes straight to the next in line, if any: the count of those running stays as it is.
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
    return true;
  }
}
