import { type Clock, ErrorCode, FleetError, isoAt, type Patch, type PatchSpec } from '@fleetpatch/shared';
import { newId } from '../engine/ids.js';
import type { Store } from '../store/store.js';

/** Patches: created once with their audit event, never edited — a new fix is a new patch. */
export class PatchCatalog {
  constructor(
    private readonly store: Store,
    private readonly clock: Pick<Clock, 'now'>,
  ) {}

  create(spec: PatchSpec, actor: string): Patch {
    const { store } = this;
    const patch: Patch = { ...spec, id: newId('pat'), createdBy: actor, createdAt: isoAt(this.clock) };
    store.transaction(() => {
      store.patches.insert(patch);
      store.appendEvent(
        { actor, type: 'patch.created', data: { patchId: patch.id, title: patch.title } },
        patch.createdAt,
      );
    });
    return patch;
  }

  /** The newest `limit` patches, newest first. */
  list(limit: number): Patch[] {
    return this.store.patches.list(limit);
  }

  get(id: string): Patch {
    const patch = this.store.patches.get(id);
    if (!patch) throw new FleetError(ErrorCode.notFound, `patch ${id} does not exist`);
    return patch;
  }
}
