import type { FileChange, OrderApply } from '@fleetpatch/shared';

/** A file change to /etc/x.conf, the one every order-path unit test patches. */
export function sampleFileChange(overrides: Partial<FileChange> = {}): FileChange {
  return {
    kind: 'file',
    path: '/etc/x.conf',
    content: 'new',
    encoding: 'utf8',
    mode: '0644',
    owner: 'root',
    group: 'root',
    ...overrides,
  };
}

/** An apply order for `sampleFileChange()`, healthy once its file check has passed for two seconds. */
export function sampleApplyOrder(orderId: string, overrides: Partial<OrderApply> = {}): OrderApply {
  return {
    type: 'order.apply',
    orderId,
    rolloutId: 'ro_1',
    patchId: 'pat_1',
    change: sampleFileChange(),
    health: {
      checks: [{ kind: 'file', path: '/etc/x.conf' }],
      intervalSeconds: 1,
      minHealthySeconds: 2,
      healthyDeadlineSeconds: 10,
    },
    failIfUnhealthyBefore: false,
    revertOnHealthFailure: true,
    bakeSeconds: 0,
    ...overrides,
  };
}
