/**
 * The least time between two `hosts.changed` notices on one stream. A reader that asked for them
 * (`?hostEvents=coalesced`) reads the status again after one; it paces its reads at least this far
 * apart anyway (the CLI's watch: 250 ms), so a notice more often would only be a write for nothing.
 */
export const HOST_CHANGE_INTERVAL_MS = 250;

/** What a `hosts.changed` notice says: how many host events and phases it stands for. */
export interface HostChangeNotice {
  type: 'hosts.changed';
  rolloutId: string;
  /** Host events and host phases since the last notice, none of them sent. */
  changes: number;
}

/**
 * Stands in for a rollout's per-host events on one stream: at most one notice per interval, the
 * first at once (a single host's move is seen without delay), the ones after a burst at the end of
 * the interval (the burst's last move is never left unsaid). A stream of 10,000 hosts' events
 * becomes a few notices a second, however many hosts move.
 */
export class HostChangeNotices {
  private changes = 0;
  private lastSentAt = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly rolloutId: string,
    private readonly send: (notice: HostChangeNotice) => void,
    private readonly intervalMs = HOST_CHANGE_INTERVAL_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** A host event or phase the stream does not send. */
  note(): void {
    this.changes++;
    if (this.timer !== undefined) return;
    const wait = this.lastSentAt + this.intervalMs - this.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  /** The stream ended: nothing more is sent. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.changes = 0;
  }

  private flush(): void {
    this.timer = undefined;
    if (this.changes === 0) return;
    const changes = this.changes;
    this.changes = 0;
    this.lastSentAt = this.now();
    this.send({ type: 'hosts.changed', rolloutId: this.rolloutId, changes });
  }
}
