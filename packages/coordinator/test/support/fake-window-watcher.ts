import type { MaintenanceWindow } from '@fleetpatch/shared';
import type { WindowWatcher } from '../../src/engine/engine-interfaces.js';

/** Records every watch and unwatch, as node-cron's scheduler would receive them. */
export class FakeWindowWatcher implements WindowWatcher {
  readonly watching = new Map<string, MaintenanceWindow>();
  watch(rolloutId: string, window: MaintenanceWindow): void {
    this.watching.set(rolloutId, window);
  }
  unwatch(rolloutId: string): void {
    this.watching.delete(rolloutId);
  }
}
