import type { PatchSpecInput } from '@fleetpatch/shared';

/** A valid file patch for coordinator tests: the engine never looks at the content, only at its shape. */
export const SAMPLE_PATCH_SPEC: PatchSpecInput = {
  title: 'Raise app workers to 8',
  problem: 'Requests queue at peak.',
  rootCause: 'workers was sized for last year.',
  intendedFix: 'workers = 8',
  ticket: 'OPS-1',
  change: {
    kind: 'file',
    path: '/etc/app/app.conf',
    content: 'workers = 8\n',
    mode: '0644',
    owner: 'root',
    group: 'root',
  },
};
