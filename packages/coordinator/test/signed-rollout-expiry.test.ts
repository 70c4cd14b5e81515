/**
 * Specification of signed rollouts, by example: a statement that expires while its rollout waits.
 * Agents refuse an order whose statement has expired (`expired`, beyond `clockSkewSeconds`); the
 * coordinator already refuses to *start* under an expired statement (rollout-signing.ts, signedHosts).
 */
import { ErrorCode } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { refusal } from './support/refusal.js';
import { HOUR_STATEMENT, signedFleet } from './support/signed-fleet.js';
import { SECOND, T0 } from './support/simulated-fleet.js';
import { statementSigner } from './support/statement-signer.js';

const alice = statementSigner();
const bob = statementSigner();

describe('a signed statement that expires while its rollout waits', () => {
  // The statement (valid one hour) expires during the canary's two-hour bake. The coordinator used to
  // send wave 2 its orders under it all the same: every agent refused them (`expired`), each refusal a
  // counted failure, and the rollout halted on "failure budget exceeded" — after up to maxFailures
  // hosts were sent orders that could not run, and with a reason that did not say why.
  it('sends no order once the statement has expired; it halts and says why', async () => {
    const { fleet, id } = await signedFleet(
      ['web-1', 'web-2', 'web-3'],
      { alice, bob },
      {
        waves: [1, '100%'],
        bakeSeconds: 2 * 3600,
        maxFailures: 1,
      },
    );
    await fleet.engine.start(id, 'alice');
    await fleet.engine.whenIdle();
    await fleet.finish('web-1');
    const sentBefore = fleet.sentOf('order.apply').length;

    await fleet.advance(2 * 3600 * SECOND);

    expect(fleet.sentOf('order.apply')).toHaveLength(sentBefore);
    expect(await fleet.state(id)).toBe('halted');
    expect((await fleet.rollout(id)).stateReason).toMatch(/statement expired/);
  });

  // A signed rollout whose `startAt` lay after its statement's expiresAt used to be accepted, signed,
  // approved and `scheduled`; at its start time every tick's `start` was refused (expired), logged
  // once, and the rollout stayed `scheduled` for ever without anybody being told.
  it('is refused when the rollout is to start after the statement expires', async () => {
    const startAt = new Date(T0 + HOUR_STATEMENT + 3600 * SECOND).toISOString();
    const err = await refusal(async () => await signedFleet(['web-1'], { alice, bob }, { startAt }));
    expect(err.code).toBe(ErrorCode.validationFailed);
    expect(err.message).toMatch(/statement\.expiresAt: .* is not after the rollout's startAt/);
    expect(err.details).toMatchObject({ path: 'body.statement.expiresAt' });
  });

  it('is taken when the rollout starts before it expires, and the rollout starts then', async () => {
    const startAt = new Date(T0 + HOUR_STATEMENT - 60 * SECOND).toISOString();
    const { fleet, id } = await signedFleet(['web-1'], { alice, bob }, { startAt });
    expect(await fleet.state(id)).toBe('scheduled');
    await fleet.advance(HOUR_STATEMENT - 60 * SECOND);
    expect(await fleet.state(id)).toBe('running');
    expect(fleet.sentOf('order.apply', 'web-1')).toHaveLength(1);
  });

  // `start` refused a statement that had expired but not one that was not valid yet: a signer whose
  // clock ran an hour ahead signed a statement valid from an hour from now, the coordinator started it
  // and sent the canary its order, and every agent on a correct clock refused it (`not_yet_valid`,
  // beyond clockSkewSeconds) — a counted failure.
  it('is not started before it is valid', async () => {
    const { fleet, id } = await signedFleet(['web-1'], { alice, bob });
    // The signer's clock ran an hour ahead of everyone else's.
    fleet.now -= 3600 * SECOND;
    const err = await refusal(async () => await fleet.engine.start(id, 'alice'));
    expect(err.code).toBe(ErrorCode.conflict);
    expect(err.message).toMatch(/signed statement is not valid before .*: agents would refuse it until then/);
    expect(fleet.sent).toEqual([]);
  });
});
