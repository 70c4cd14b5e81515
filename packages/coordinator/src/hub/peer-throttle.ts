/**
 * Lets one event per key through per interval and counts the ones it holds back, so a peer that
 * misbehaves a thousand times a second costs one log line (or one audit row) per interval, which
 * then says how many it stands for. Keys are remote addresses before authentication and agent ids
 * after; the table is capped so a flood from many addresses cannot grow it without bound.
 */
export class PeerThrottle {
  private readonly entries = new Map<string, { at: number; suppressed: number }>();

  constructor(
    private readonly intervalMs: number,
    private readonly maxKeys = 10_000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The number held back since the last event let through, or undefined when this one is held back. */
  pass(key: string): number | undefined {
    const now = this.now();
    const entry = this.entries.get(key);
    if (entry && now - entry.at < this.intervalMs) {
      entry.suppressed++;
      return undefined;
    }
    // Re-inserted so the Map's order is oldest-first and the oldest key is the one evicted.
    this.entries.delete(key);
    if (this.entries.size >= this.maxKeys) {
      const oldest = this.entries.keys().next();
      if (!oldest.done) this.entries.delete(oldest.value);
    }
    this.entries.set(key, { at: now, suppressed: 0 });
    return entry?.suppressed ?? 0;
  }
}
