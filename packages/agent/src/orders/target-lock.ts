import type { Change } from '@fleetpatch/shared';

/**
 * Which targets some order is acting on right now, counted: taken synchronously, before the first
 * await, so that two orders never both decide a target is free. Used for the files and packages an
 * apply or a restore changes, and for the apply orders a revert is restoring.
 */
export class TargetLock {
  private readonly holders = new Map<string, number>();

  isHeld(target: string): boolean {
    return this.holders.has(target);
  }

  /** Marks `target` as held; returns the release (call it once). */
  hold(target: string): () => void {
    this.holders.set(target, (this.holders.get(target) ?? 0) + 1);
    return () => {
      const left = (this.holders.get(target) ?? 1) - 1;
      if (left > 0) this.holders.set(target, left);
      else this.holders.delete(target);
    };
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
