// @ts-check
// The bench's check that a storm never takes a coordinator down: polls every live coordinator's
// /healthz, one after another every 50 ms, until stopped, and counts every answer that is not a 200.
// Each poll is a connection of its own (no keep-alive), so the network reset (`ss -K`, which cuts every
// connection to the coordinators' port, the bench's own included) can only hit a poll in flight, and
// `whilePaused` runs its work when none is.
import { Agent as UndiciAgent, fetch as undiciFetch } from 'undici';

const POLL_INTERVAL_MS = 50;

export class HealthzWatch {
  failures = 0;
  #running = true;
  /** @type {Promise<void> | null} while set, the loop waits on it before its next poll */
  #pause = null;
  /** @type {(() => void) | null} called when the loop reaches a set pause */
  #paused = null;
  #dispatcher = new UndiciAgent({ pipelining: 0 });
  /** @type {Promise<void>} */
  #loop;

  /** @param {() => readonly { url: string }[]} live the coordinators to poll, read before each round */
  constructor(live) {
    this.#loop = this.#run(live);
  }

  /**
   * Runs `fn` with no poll in flight, then lets the polls go on.
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  async whilePaused(fn) {
    /** @type {() => void} */
    let resume = () => {};
    this.#pause = new Promise((resolve) => {
      resume = resolve;
    });
    await new Promise((resolve) => {
      this.#paused = () => resolve(undefined);
    });
    try {
      return await fn();
    } finally {
      this.#pause = null;
      resume();
    }
  }

  /** Stops polling; resolves once the last poll is done. */
  async stop() {
    this.#running = false;
    await this.#loop;
    await this.#dispatcher.close();
  }

  /** @param {() => readonly { url: string }[]} live */
  async #run(live) {
    while (this.#running) {
      if (this.#pause) {
        this.#paused?.();
        await this.#pause;
      }
      for (const c of live()) {
        const res = await undiciFetch(`${c.url}/healthz`, { dispatcher: this.#dispatcher }).catch(() => null);
        if (res?.status !== 200) this.failures++;
        await res?.arrayBuffer();
      }
      await new Promise((resolve) => setTimeout(resolve, POLL_INTERVAL_MS));
    }
  }
}
