import type { Change } from '@fleetpatch/shared';

/**
 * Which targets some order is acting on right now, counted: taken synchronously, before the first
 * await, so that two orders never both decide a target is free. Used for the files and packages an
 * apply or a restore changes, and for the apply orders a revert is restoring.
 */
export class TargetLock {
  private readonly holders = new Map<string, number>();
  private readonly waiters = new Map<string, (() => void)[]>();

  isHeld(target: string): boolean {
    return this.holders.has(target);
  }

  /** Marks `target` as held; returns the release (call it once). */
  hold(target: string): () => void {
    this.holders.set(target, (this.holders.get(target) ?? 0) + 1);
    return () => {
      const left = (this.holders.get(target) ?? 1) - 1;
      if (left > 0) {
        this.holders.set(target, left);
        return;
      }
      this.holders.delete(target);
      const waiting = this.waiters.get(target) ?? [];
      this.waiters.delete(target);
      for (const wake of waiting) wake();
    };
  }

  /**
   * Holds `target` once no one else does: at once when it is free, else when its holders let go (and
   * no one took it in between). Resolves with the release, or undefined if `signal` aborts first.
   */
  async holdWhenFree(target: string, signal: AbortSignal): Promise<(() => void) | undefined> {
    while (this.isHeld(target)) {
      if (signal.aborted) return undefined;
      await new Promise<void>((resolve) => {
        const wake = () => {
          signal.removeEventListener('abort', wake);
          resolve();
        };
        signal.addEventListener('abort', wake, { once: true });
        this.waiters.set(target, [...(this.waiters.get(target) ?? []), wake]);
      });
    }
    return signal.aborted ? undefined : this.hold(target);
  }
}

/**
 * What an order changes on the host: one file, or the dpkg database. Package orders go one at a
 * time whatever packages they name: a set (a source change resolved on the host) may overlap any
 * other, and dpkg runs one transaction at a time anyway.
 */
export function targetOf(change: Change): string {
  return change.kind === 'file' ? `file ${change.path}` : 'packages (the dpkg database)';
}

/** Why an order for a target another order holds is refused: `blocked`, to be sent again later. */
export function busyTargetReason(target: string): string {
  return `another order for ${target} is still running on this host; nothing was changed`;
}
