/**
 * The first moments of a coordinator process, while its agents come back.
 *
 * A coordinator that was down (an upgrade, a crash, a machine moved) ticks within a second of starting,
 * while its agents reconnect over their backoff (up to `backoffMaxMs`, 30 s by default, with full
 * jitter) — and each brings in its hello what happened while the coordinator was away: results, a
 * bake failure and its self-revert. Judged on time alone before then, a host that finished healthy
 * during the downtime was timed out, one whose order waited for delivery was called offline, a bake
 * that ended meanwhile passed before its canary could say it failed, and hosts were skipped as offline
 * at dispatch seconds before they reconnected.
 *
 * So until the grace has passed, no time-based judgement is made of a host whose hello this coordinator
 * has not recorded since it started: its deadline, whether it is offline at dispatch, the end of its
 * wave's bake; and no scheduled start is made. Once its hello is recorded, the host is judged as usual.
 */
export class ReconnectGrace {
  private readonly heardFrom = new Set<string>();

  /**
   * `endsAt` on the engine's clock: its start plus the grace. `heardElsewhere`: in a coordinator group,
   * whether another member holds the agent's connection — it has recorded the agent's hello, so what the
   * agent held is known in the shared store, and this member need not wait for a hello of its own.
   */
  constructor(
    private endsAt: number,
    private readonly heardElsewhere: (hostId: string) => boolean = () => false,
  ) {}

  /** No grace: every judgement as soon as it is due (a fresh engine in a test, `reconnectGraceSeconds: 0`). */
  static none(): ReconnectGrace {
    return new ReconnectGrace(Number.NEGATIVE_INFINITY);
  }

  /** The engine's wall clock was stepped by `ms`: the grace still ends as long after the start as it did. */
  shift(ms: number): void {
    this.endsAt += ms;
  }

  /** This coordinator recorded the host's hello at `now`: what it held is known here now. */
  heard(hostId: string, now: number): void {
    // Past the grace nobody asks any more: nothing to keep.
    if (this.over(now)) this.heardFrom.clear();
    else this.heardFrom.add(hostId);
  }

  /** Whether the grace has passed at `now`. */
  over(now: number): boolean {
    return now >= this.endsAt;
  }

  /** Whether a host may be judged on time at `now`: the grace has passed, or its hello is recorded (here or elsewhere). */
  allows(hostId: string, now: number): boolean {
    return this.over(now) || this.heardFrom.has(hostId) || this.heardElsewhere(hostId);
  }
}
