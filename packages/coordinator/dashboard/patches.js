import { api, seg } from './api.js';

/** Patches by id: a patch never changes once created, so each is fetched once per page load. */
const patches = new Map();

export function patchOf(patchId) {
  if (!patches.has(patchId)) {
    const loading = api(`/v1/patches/${seg(patchId)}`);
    patches.set(patchId, loading);
    loading.catch(() => patches.delete(patchId));
  }
  return patches.get(patchId);
}
