import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * Runs async sections one at a time, in the order they were asked for. A section asked for from
 * inside a running one (its async context says so) runs at once as part of it: the engine's verbs
 * call each other (a tick starts a scheduled rollout), and waiting for oneself would never end.
 *
 * Why: with a synchronous store every engine step ran to completion before the next began; with an
 * asynchronous one, two steps could interleave between a read and the write it decides. Running the
 * engine's steps one at a time keeps each decision and its write together, as before.
 */
/**
 * What a section must also hold beyond this process: the coordinators of a group take one lock in
 * their shared database (see group/engine-step-lock.ts), so their steps are one at a time too.
 * `enter` resolves with the function that leaves.
 */
export interface SectionGuard {
  enter(): Promise<() => Promise<void>>;
}

export class OneAtATime {
  private readonly section = new AsyncLocalStorage<{ open: boolean }>();
  /** Settles when the last section asked for so far has ended. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(private readonly guard?: SectionGuard) {}

  /** Whether the caller runs inside a section of this one. */
  isInside(): boolean {
    return this.section.getStore()?.open === true;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.isInside()) return fn();
    const previous = this.tail;
    let release!: () => void;
    this.tail = new Promise<void>((resolve) => {
      release = resolve;
    });
    await previous;
    let leave: (() => Promise<void>) | undefined;
    const section = { open: true };
    try {
      leave = await this.guard?.enter();
      return await this.section.run(section, fn);
    } finally {
      // Closed, not just left: work a section scheduled (a timer, a callback) inherits its context
      // and must queue like anyone else once the section is over.
      section.open = false;
      // A guard that cannot be left (its connection is gone) was released with the connection.
      await leave?.().catch(() => {});
      release();
    }
  }

  /** Runs `fn` outside any section (for callbacks a section hands on: they must queue, not join). */
  outside<T>(fn: () => T): T {
    return this.section.exit(fn);
  }
}
