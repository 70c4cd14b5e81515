import { COORDINATOR_MESSAGE_SINCE, CoordinatorMessageSchema, PROTOCOL_VERSION, readFrame } from '@fleetpatch/shared';

/** A made-up order id: the frames below are parsed, never acted on. */
const ORDER_ID = 'warm-up';
const SHA256 = '0'.repeat(64);

/**
 * One made-up frame of each order the agent is sent, in the forms most orders take: a file change and a
 * package change, every kind of health check, a preflight, a revert, a watch, a cancel and an ack. The
 * optional parts an order may carry (a signed statement, units to restart, host preconditions, a set
 * of packages) are left out: an order with them still builds their parsers when it first comes.
 */
export const WARM_UP_FRAMES: readonly string[] = [
  {
    type: 'order.apply',
    orderId: ORDER_ID,
    rolloutId: 'ro_warm_up',
    patchId: 'pat_warm_up',
    change: {
      kind: 'file',
      path: '/etc/warm-up.conf',
      content: 'x = 1\n',
      encoding: 'utf8',
      mode: '0644',
      owner: 'root',
      group: 'root',
      expectedPriorSha256: SHA256,
    },
    health: {
      checks: [
        { kind: 'command', argv: ['/bin/true'] },
        { kind: 'http', url: 'http://127.0.0.1:8080/health' },
        { kind: 'tcp', host: '127.0.0.1', port: 8080 },
        { kind: 'systemd', unit: 'warm-up.service' },
        { kind: 'process', processName: 'warm-up' },
        { kind: 'file', path: '/etc/warm-up.conf', sha256: SHA256 },
        { kind: 'metric', metric: 'disk_used_percent', mount: '/', max: 90 },
      ],
      intervalSeconds: 2,
      minHealthySeconds: 0,
      healthyDeadlineSeconds: 60,
    },
    failIfUnhealthyBefore: false,
    revertOnHealthFailure: true,
    bakeSeconds: 0,
  },
  {
    type: 'order.apply',
    orderId: ORDER_ID,
    rolloutId: 'ro_warm_up',
    patchId: 'pat_warm_up',
    change: { kind: 'package', manager: 'apt', name: 'warm-up', version: '1.0-1', expectedPriorVersion: '0.9-1' },
    health: { checks: [] },
  },
  {
    type: 'order.preflight',
    orderId: `${ORDER_ID}-preflight`,
    change: { kind: 'package', manager: 'apt', source: 'warm-up', version: '1.0-1' },
    answerWithinMs: 10_000,
  },
  { type: 'order.revert', orderId: `${ORDER_ID}-revert`, revertsOrderId: ORDER_ID },
  { type: 'order.watch', orderId: ORDER_ID, seconds: 60 },
  { type: 'order.cancel', orderId: ORDER_ID },
  { type: 'order.ack', orderId: ORDER_ID, finishedAt: '2026-01-01T00:00:00.000Z' },
].map((frame) => JSON.stringify(frame));

let warmed: readonly string[] | undefined;

/**
 * Parses the frames above once per process, as the connection parses what the coordinator sends, and
 * returns the types that parsed as messages (all of them: the test holds it so). Never throws:
 * `readFrame` answers a frame it cannot read, and one that does not read only warms nothing.
 *
 * Why: zod builds a schema's parser the first time it parses with it (it generates the code of each
 * object shape), and V8 compiles zod's own code then too. In a fresh agent its first order.apply took
 * ~3 ms longer to read than later ones, and every host runs its first order cold — the canary of a
 * rollout always does. Paid here, at start (~10 ms of CPU for every kind, most of which a first order
 * does not use), it comes off the first order's way from sent to result.
 */
export function warmUpProtocol(): readonly string[] {
  if (warmed !== undefined) return warmed;
  warmed = WARM_UP_FRAMES.flatMap((raw) => {
    const frame = readFrame(CoordinatorMessageSchema, COORDINATOR_MESSAGE_SINCE, PROTOCOL_VERSION, raw);
    return frame.kind === 'message' ? [frame.message.type] : [];
  });
  return warmed;
}
