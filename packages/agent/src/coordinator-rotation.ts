/**
 * Which coordinator of a group the agent dials next, and how long it waits first.
 *
 * The agent moves to the next URL of its list on every failed or dropped connection (round robin), so a
 * dead coordinator costs one attempt. The exponential backoff grows per *round* — once every URL has
 * failed since the last welcome — not per URL: a list of one behaves exactly as a single coordinator
 * always has, and a list of several does not wait longer and longer while live coordinators remain.
 */
export interface RotationOptions {
  /** Socket URLs, in the order the agent prefers them; at least one. */
  urls: readonly string[];
  /** Backoff base and cap, in ms: each wait is a random "full jitter" draw below its ceiling. */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** A draw in [0, 1): injectable so that the schedule can be checked exactly. */
  random?: () => number;
}

export interface NextDial {
  url: string;
  delayMs: number;
  /** Every URL has failed since the last welcome (or since the start): this wait is the growing backoff. */
  endOfRound: boolean;
}

/** No redial comes sooner than this, whatever the draw: a coordinator that refuses at once is not hammered. */
const MIN_DELAY_MS = 50;

export class CoordinatorRotation {
  private index = 0;
  /** Where the current round began: the URL last welcomed on, or the first one. */
  private roundStart = 0;
  private failedRounds = 0;
  private readonly random: () => number;

  constructor(private readonly options: RotationOptions) {
    if (options.urls.length === 0) throw new Error('a coordinator rotation needs at least one URL');
    this.random = options.random ?? Math.random;
  }

  /** The URL to dial now. */
  get current(): string {
    return this.options.urls[this.index] as string;
  }

  /** The current coordinator welcomed the agent: a new round starts from it, with the backoff reset. */
  welcomed(): void {
    this.roundStart = this.index;
    this.failedRounds = 0;
  }

  /**
   * The connection to `current` failed or dropped: move on to the next URL. Within a round the wait is a
   * draw below the backoff base (so that agents leaving a dead coordinator together do not reach the
   * next one in the same instant); when the round is over, below `base·2^rounds`, capped. An agent refused
   * for a reason only a person can fix waits the cap.
   */
  next({ needsHuman }: { needsHuman: boolean }): NextDial {
    const { urls, backoffBaseMs: base, backoffMaxMs: cap } = this.options;
    this.index = (this.index + 1) % urls.length;
    const endOfRound = this.index === this.roundStart;
    let ceiling = Math.min(cap, base);
    if (endOfRound) {
      ceiling = Math.min(cap, base * 2 ** this.failedRounds);
      this.failedRounds = Math.min(this.failedRounds + 1, 30);
    }
    const delayMs = needsHuman ? cap : Math.max(MIN_DELAY_MS, Math.floor(this.random() * ceiling));
    return { url: this.current, delayMs, endOfRound };
  }
}
