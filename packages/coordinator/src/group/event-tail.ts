import type { Logger } from 'pino';
import type { Store } from '../store/store.js';

const PAGE = 500;

/**
 * Feeds the store's live event stream (SSE) from the database, so a reader connected to any
 * coordinator of the group sees every event, whichever coordinator committed it, in `seq` order and
 * once. It reads on when woken (a NOTIFY at each commit that appended events) and on its own
 * timer, since a wake-up can be lost. Seqs commit in order (PostgresEventRepository.append), so
 * reading after the last seq seen never skips one.
 */
export class EventTail {
  private after = 0;
  private reading: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly log: Logger,
    private readonly pollMs: number,
  ) {}

  /** From the newest event on: what happened before is read by each reader's own backlog query. */
  async start(): Promise<void> {
    this.after = await this.store.backend.events.latestSeq();
    this.store.feedStreamFromTail();
    this.timer = setInterval(() => this.poke(), this.pollMs);
    this.timer.unref();
  }

  /** Reads on now (coalesced: a wake-up during a read makes one more read after it). */
  poke(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.read()
      .catch((err: unknown) => this.log.warn({ err }, 'reading new events failed; the next poll reads on'))
      .finally(() => {
        this.reading = undefined;
        if (this.again) {
          this.again = false;
          this.poke();
        }
      });
  }

  /** Resolves once what is committed now has been fed (tests). */
  async caughtUp(): Promise<void> {
    this.poke();
    while (this.reading) await this.reading;
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private async read(): Promise<void> {
    for (;;) {
      const page = await this.store.allEvents(this.after, PAGE);
      for (const event of page) {
        this.after = event.seq;
        this.store.feedStream(event);
      }
      if (page.length < PAGE) return;
    }
  }
}
