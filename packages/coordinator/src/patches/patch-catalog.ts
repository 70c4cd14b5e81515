import {
  type ChangeRecordField,
  type ChangeRecordView,
  type Clock,
  ErrorCode,
  FleetError,
  isoAt,
  type NewPatch,
  type Patch,
  type PatchHistory,
  type PatchSummary,
  patchContentDigest,
  patchSpecOf,
} from '@fleetpatch/shared';
import type { PromotionConfig } from '../config.js';
import { newId } from '../engine/ids.js';
import type { Store } from '../store/store.js';
import { changeRecordView } from './change-record-view.js';
import { patchHistory } from './patch-history.js';

export interface PatchCatalogOptions {
  /** The coordinator's promotion order: how history groups rollouts by environment. */
  promotion?: PromotionConfig | undefined;
  /** Change record fields this coordinator requires (shown as missing in the record). */
  requiredRecordFields?: readonly ChangeRecordField[];
}

/** Patches: created once with their audit event, never edited — a new fix is a new patch. */
export class PatchCatalog {
  constructor(
    private readonly store: Store,
    private readonly clock: Pick<Clock, 'now'>,
    private readonly options: PatchCatalogOptions = {},
  ) {}

  async create(spec: NewPatch, actor: string): Promise<Patch> {
    const { store } = this;
    const patch: Patch = {
      ...spec,
      id: newId('pat'),
      createdBy: actor,
      createdAt: isoAt(this.clock),
      contentDigest: patchContentDigest(patchSpecOf(spec)),
    };
    await store.transaction(async () => {
      await store.patches.insert(patch);
      await store.appendEvent(
        {
          actor,
          type: 'patch.created',
          data: { patchId: patch.id, title: patch.title, contentDigest: patch.contentDigest },
        },
        patch.createdAt,
      );
    });
    return patch;
  }

  /** The newest `limit` patches as summaries (no content), newest first. */
  async list(limit: number): Promise<PatchSummary[]> {
    return await this.store.patches.list(limit);
  }

  async get(id: string): Promise<Patch> {
    const patch = await this.store.patches.get(id);
    if (!patch) throw new FleetError(ErrorCode.notFound, `patch ${id} does not exist`);
    return patch;
  }

  /**
   * What a page that names the patch needs (title, ticket, what it changes), without its content.
   * A patch whose stored spec no longer holds a change has no summary (lists leave it out too): it is
   * answered as unknown here, and whole, as far as it can be, by `get`.
   */
  async summary(id: string): Promise<PatchSummary> {
    const summary = await this.store.patches.summary(id);
    if (!summary) throw new FleetError(ErrorCode.notFound, `patch ${id} does not exist`);
    return summary;
  }

  /** The path of the patch's content through the environments. */
  async history(id: string): Promise<PatchHistory> {
    return await patchHistory(this.store, await this.get(id), this.options.promotion);
  }

  /** The change request: the record with its evidence and triggers filled in. */
  async record(id: string): Promise<ChangeRecordView> {
    return await changeRecordView(this.store, await this.get(id), {
      policy: this.options.promotion,
      required: this.options.requiredRecordFields ?? [],
    });
  }
}
