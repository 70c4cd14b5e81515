import { FleetError, type MaintenanceWindow } from '@fleetpatch/shared';
import cron, { type Logger as CronLogger, type ScheduledTask, type TaskContext } from 'node-cron';
import type { Logger } from 'pino';
import { currentWindow, occurrenceAt, validateWindow } from './maintenance-window.js';

export interface WindowSchedulerOptions {
  /** A window of this rollout has just opened. */
  onOpen(rolloutId: string): void;
  /** The current window of this rollout has reached its cutoff: no new wave may start. */
  onCutoff(rolloutId: string): void;
  log: Logger;
}

interface Watch {
  window: MaintenanceWindow;
  task: ScheduledTask;
  cutoffTimer: NodeJS.Timeout | undefined;
}

/**
 * Wakes the rollout engine when a maintenance window opens and when its cutoff is reached. It only
 * wakes: the engine decides with `canStartWave(window, clock.now())`, so a spurious or duplicate
 * call is harmless, and nothing here is persisted (the store re-`watch`es every rollout on start).
 *
 * Opening is a node-cron task per rollout; the cutoff is a timer armed when a window opens, because
 * "open + duration - cutoff" is not a cron expression in general.
 */
export class WindowScheduler {
  readonly #options: WindowSchedulerOptions;
  readonly #log: Logger;
  readonly #watches = new Map<string, Watch>();
  #stopped = false;

  constructor(options: WindowSchedulerOptions) {
    this.#options = options;
    this.#log = options.log.child({ component: 'window-scheduler' });
  }

  /**
   * Starts (or replaces) the watch of one rollout. When called inside a window, e.g. after a
   * restart, the cutoff of that window is armed but `onOpen` is not called: the caller is already
   * looking at the rollout.
   */
  watch(rolloutId: string, window: MaintenanceWindow): void {
    if (this.#stopped) {
      throw new FleetError('illegal_transition', 'the window scheduler is stopped', { rolloutId });
    }
    validateWindow(window);
    this.unwatch(rolloutId);

    const log = this.#log.child({ rolloutId });
    const opened = (context: TaskContext) => this.#opened(rolloutId, context.date.getTime());
    const task = cron.createTask(window.cron, opened, {
      timezone: window.timezone,
      name: `fleetpatch-window:${rolloutId}`,
      logger: cronLogger(log),
    });
    // node-cron skips a fire time the event loop was too busy to honour; the window is open all the
    // same, and a rollout that never hears of it would wait a whole period for the next one.
    task.on('execution:missed', (context) => {
      log.warn({ at: context.date.toISOString() }, 'maintenance window opened while the event loop was blocked');
      this.#opened(rolloutId, context.date.getTime());
    });
    const watch: Watch = { window, task, cutoffTimer: undefined };
    this.#watches.set(rolloutId, watch);
    void task.start();

    const occurrence = currentWindow(window, Date.now());
    if (occurrence) this.#armCutoff(rolloutId, watch, occurrence.cutoffAt);
    log.debug({ cron: window.cron, timezone: window.timezone }, 'maintenance window watched');
  }

  unwatch(rolloutId: string): void {
    const watch = this.#watches.get(rolloutId);
    if (!watch) return;
    this.#watches.delete(rolloutId);
    clearTimeout(watch.cutoffTimer);
    // destroy() stops the task and removes it from node-cron's global registry.
    void watch.task.destroy();
  }

  isWatching(rolloutId: string): boolean {
    return this.#watches.has(rolloutId);
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const rolloutId of [...this.#watches.keys()]) this.unwatch(rolloutId);
  }

  #opened(rolloutId: string, opensAt: number): void {
    const watch = this.#watches.get(rolloutId);
    if (!watch) return;
    // With overlapping occurrences the latest one rules (as in currentWindow), so its cutoff replaces any earlier one.
    this.#armCutoff(rolloutId, watch, occurrenceAt(watch.window, opensAt).cutoffAt);
    this.#call('onOpen', rolloutId);
  }

  #armCutoff(rolloutId: string, watch: Watch, cutoffAt: number): void {
    clearTimeout(watch.cutoffTimer);
    watch.cutoffTimer = undefined;
    const delay = cutoffAt - Date.now();
    if (delay < 0) return;
    // Durations are at most 7 days, well under setTimeout's 24.8-day ceiling.
    watch.cutoffTimer = setTimeout(() => {
      watch.cutoffTimer = undefined;
      if (this.#watches.get(rolloutId) === watch) this.#call('onCutoff', rolloutId);
    }, delay);
  }

  #call(which: 'onOpen' | 'onCutoff', rolloutId: string): void {
    try {
      this.#options[which](rolloutId);
    } catch (err) {
      this.#log.error({ err, rolloutId }, `maintenance window ${which} callback failed`);
    }
  }
}

/** node-cron logs through its own interface; route it into pino so nothing reaches the console. */
function cronLogger(log: Logger): CronLogger {
  return {
    info: (message) => log.info(message),
    warn: (message) => log.warn(message),
    error: (message, err) =>
      message instanceof Error ? log.error({ err: message }, 'node-cron error') : log.error({ err }, message),
    debug: (message, err) =>
      message instanceof Error ? log.debug({ err: message }, 'node-cron debug') : log.debug({ err }, message),
  };
}
