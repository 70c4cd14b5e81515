import { type FSWatcher, type StatWatcher, unwatchFile, watch, watchFile } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from 'pino';

export interface StatusWatchOptions {
  /** dpkg's status file: written as `status-new`, then renamed over `status`. */
  statusFile: string;
  /** Quiet time after the last change before `onChange` runs: a dpkg run rewrites the file many times. */
  debounceMs: number;
  /** During a long run that never pauses that long, `onChange` still runs at least this often. */
  maxDelayMs: number;
  onChange(): void;
  log: Logger;
}

/**
 * Calls `onChange` once the dpkg database has changed and then stayed quiet for `debounceMs`: after
 * every dpkg run, whoever started it. Watches the directory rather than the file, since dpkg renames
 * a new file over the old one (a watch on the file would follow the old inode and go deaf); where
 * the file system cannot watch (inotify exhausted, some network file systems) it polls instead.
 */
export class StatusWatch {
  private watcher: FSWatcher | null = null;
  private poller: StatWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private firstChangeAt: number | null = null;
  private stopped = false;

  constructor(private readonly options: StatusWatchOptions) {}

  start(): void {
    const { statusFile, log } = this.options;
    const name = basename(statusFile);
    try {
      this.watcher = watch(dirname(statusFile), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === name) this.changed();
      });
      this.watcher.on('error', (err) => {
        log.warn({ err, statusFile }, 'watching the dpkg database failed; polling it instead');
        this.watcher?.close();
        this.watcher = null;
        this.poll();
      });
    } catch (err) {
      log.warn({ err, statusFile }, 'cannot watch the dpkg database; polling it instead');
      this.poll();
    }
  }

  /** Something else says the database may have changed (an order of ours finished): same debounce. */
  changed(): void {
    if (this.stopped) return;
    const now = Date.now();
    this.firstChangeAt ??= now;
    if (this.timer) clearTimeout(this.timer);
    const waited = now - this.firstChangeAt;
    const delay = Math.max(0, Math.min(this.options.debounceMs, this.options.maxDelayMs - waited));
    this.timer = setTimeout(() => {
      this.timer = null;
      this.firstChangeAt = null;
      this.options.onChange();
    }, delay);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.watcher?.close();
    this.watcher = null;
    if (this.poller) unwatchFile(this.options.statusFile);
    this.poller = null;
  }

  private poll(): void {
    if (this.stopped || this.poller) return;
    this.poller = watchFile(this.options.statusFile, { persistent: false, interval: 5000 }, (now, before) => {
      if (now.mtimeMs !== before.mtimeMs || now.ino !== before.ino || now.size !== before.size) this.changed();
    });
  }
}
