import type { EventRecord } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderEvent } from '../src/render-events.js';

const AT = '2030-01-07T12:00:00.000Z';
const event = (over: Partial<EventRecord>): EventRecord => ({
  seq: 12,
  rolloutId: 'ro_1',
  hostId: null,
  actor: 'alice',
  type: 'rollout.started',
  fromState: null,
  toState: null,
  data: null,
  at: AT,
  ...over,
});

describe('renderEvent', () => {
  it('shows an ordinary event with its states and data as JSON', () => {
    expect(renderEvent(event({ hostId: 'web-1', fromState: 'scheduled', toState: 'running', data: { wave: 0 } }))).toBe(
      `#12 ${AT} alice rollout.started [web-1] scheduled→running wave 1`,
    );
    expect(renderEvent(event({ type: 'wave.passed', data: { wave: 2, bakeSeconds: 30 } }))).toBe(
      `#12 ${AT} alice wave.passed wave 3 {"bakeSeconds":30}`,
    );
  });

  it('shows a host id or actor that carries escapes escaped, on one line', () => {
    expect(renderEvent(event({ actor: 'mallory\x1b[2J\n#13 forged', data: null }))).toBe(
      `#12 ${AT} mallory\\u001b[2J\\u000a#13 forged rollout.started`,
    );
  });

  it('marks an order a host refused as a security event, with its code and reason in words', () => {
    const reason = "tampered: the order's change is not the signed patch's (change.contentSha256)";
    const refused = event({
      actor: 'web-1',
      hostId: 'web-1',
      type: 'security.order_refused',
      data: { orderId: 'ord_9', order: 'apply', code: 'tampered', reason },
    });
    expect(renderEvent(refused)).toBe(
      `#12 ${AT} web-1 security.order_refused [web-1] SECURITY: refused apply order ord_9 — ${reason}`,
    );
  });

  it('names the code of a policy refusal, and escapes control characters of the agent’s text', () => {
    const refused = event({
      actor: 'web-2',
      hostId: 'web-2',
      type: 'security.order_refused',
      data: { orderId: 'ord_3', order: 'revert', code: 'policy_denied', reason: 'path /etc/sudoers\x1b[2J refused' },
    });
    expect(renderEvent(refused)).toBe(
      `#12 ${AT} web-2 security.order_refused [web-2] SECURITY: refused revert order ord_3 — policy_denied: path /etc/sudoers\\u001b[2J refused`,
    );
  });

  it('falls back to JSON when a security event does not have the expected data', () => {
    const odd = event({ type: 'security.order_refused', data: { orderId: 'ord_1' } });
    expect(renderEvent(odd)).toBe(`#12 ${AT} alice security.order_refused {"orderId":"ord_1"}`);
  });
});
