import { api, seg } from './api.js';

/**
 * Patch summaries by id: a patch never changes once created, so each is fetched once per page load.
 * The pages name a patch (title, ticket) and never show its content, which can be a megabyte a
 * patch: they ask for the summary, not the whole patch.
 */
const summaries = new Map();

export function patchSummaryOf(patchId) {
  if (!summaries.has(patchId)) {
    const loading = api(`/v1/patches/${seg(patchId)}/summary`);
    summaries.set(patchId, loading);
    loading.catch(() => summaries.delete(patchId));
  }
  return summaries.get(patchId);
}
