// @ts-check
// The bench's agents, spread over child processes (scripts/lib/bench-agent-process.mjs), one per core
// by default: start them, count the connected, kill them all at once (the reconnect storm), and read
// their CPU time from /proc apart from the coordinator's.
import { fork } from 'node:child_process';
import { cpuMsOf } from './bench-measures.mjs';

/** @import { ChildProcess } from 'node:child_process' */

const PROCESS_SCRIPT = new URL('bench-agent-process.mjs', import.meta.url);

/**
 * @typedef {{ coordinatorUrls: readonly string[], joinToken: string, scratch: string, facts: Record<string, unknown>, startConcurrency: number }} FleetSetup
 */

/**
 * Agent `index`'s coordinators: coordinator `index mod K` first, then the others in turn, so the fleet
 * spreads evenly over a group and each agent knows where to go when its own dies.
 * @param {readonly string[]} urls
 * @param {number} index
 */
function coordinatorsOf(urls, index) {
  return urls.map((_, k) => urls[(index + k) % urls.length] ?? '');
}

export class AgentProcesses {
  /** @type {ChildProcess[]} */
  children = [];
  /** CPU time (ms) of the processes already gone, so `cpuMs` keeps counting across a storm. */
  #retiredCpuMs = 0;
  /** @type {NodeJS.ProcessEnv | undefined} the processes' environment, when not this one's (the profiler preload) */
  #env;

  /**
   * @param {readonly string[]} ids every host id of the fleet
   * @param {number} processes how many processes to spread them over
   * @param {FleetSetup} setup
   * @param {NodeJS.ProcessEnv} [env] the processes' environment, when not this one's
   */
  constructor(ids, processes, setup, env) {
    this.#env = env;
    const count = Math.max(1, Math.min(processes, ids.length));
    /** @type {string[][]} */
    this.slices = Array.from({ length: count }, (_, p) => ids.filter((_, i) => i % count === p));
    /** @type {string[][][]} each slice's agents' coordinator lists, in the slice's order */
    this.coordinatorLists = Array.from({ length: count }, (_, p) =>
      ids.flatMap((_, i) => (i % count === p ? [coordinatorsOf(setup.coordinatorUrls, i)] : [])),
    );
    const { coordinatorUrls, ...rest } = setup;
    this.setup = rest;
  }

  /**
   * Forks the processes and starts every agent; resolves when each process has started its slice.
   * @param {NodeJS.ProcessEnv} [extraEnv] added to the processes' environment for this start
   */
  async start(extraEnv) {
    const env = this.#env || extraEnv ? { ...(this.#env ?? process.env), ...extraEnv } : undefined;
    this.children = this.slices.map(() =>
      fork(PROCESS_SCRIPT, [], {
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        ...(env ? { env } : {}),
      }),
    );
    await Promise.all(
      this.children.map((child, p) => {
        const started = this.#answer(child, 'started');
        child.send({ type: 'start', ids: this.slices[p], coordinatorUrls: this.coordinatorLists[p], ...this.setup });
        return started;
      }),
    );
  }

  /** How many agents say they are connected, summed over the processes. */
  async connected() {
    const counts = await Promise.all(
      this.children.map((child) => {
        const answer = this.#answer(child, 'count');
        child.send({ type: 'count' });
        return answer;
      }),
    );
    return counts.reduce((n, /** @type {any} */ m) => n + m.connected, 0);
  }

  /** CPU time (user + system, ms) of every agent process so far, killed ones included. */
  cpuMs() {
    return this.#retiredCpuMs + this.children.reduce((ms, child) => ms + cpuMsOf(child.pid), 0);
  }

  /** The reconnect storm's first half: every agent process killed at once (SIGKILL: no goodbye frame). */
  async killAll() {
    this.#retiredCpuMs = this.cpuMs();
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise((resolve) => {
            child.once('exit', resolve);
            child.kill('SIGKILL');
          }),
      ),
    );
    this.children = [];
  }

  /** Drains every agent (running orders finish) and waits for the processes to exit. */
  async stop() {
    await Promise.all(
      this.children.map(
        (child) =>
          new Promise((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve(undefined);
            child.once('exit', resolve);
            child.send({ type: 'stop' }, (err) => {
              if (err) child.kill('SIGKILL');
            });
          }),
      ),
    );
    this.children = [];
  }

  /**
   * The next message of `type` from `child`; rejects on an error message or its exit.
   * @param {ChildProcess} child
   * @param {string} type
   * @returns {Promise<any>}
   */
  #answer(child, type) {
    return new Promise((resolve, reject) => {
      const onMessage = (/** @type {any} */ message) => {
        if (message.type !== type && message.type !== 'error') return;
        done();
        if (message.type === 'error') reject(new Error(`agent process ${child.pid}: ${message.message}`));
        else resolve(message);
      };
      const onExit = (/** @type {number | null} */ code) => {
        done();
        reject(new Error(`agent process ${child.pid} exited (${code}) before answering ${type}`));
      };
      const done = () => {
        child.off('message', onMessage);
        child.off('exit', onExit);
      };
      child.on('message', onMessage);
      child.on('exit', onExit);
    });
  }
}
