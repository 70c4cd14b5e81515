/**
 * The reconnect grace's rule on its own (the engine's scenarios are in rollout-restart-clock.test.ts):
 * until it ends, a host is judged on time only once its hello is recorded — here, or, in a coordinator
 * group, by the member that holds its connection.
 */
import { describe, expect, it } from 'vitest';
import { ReconnectGrace } from '../src/engine/reconnect-grace.js';

describe('ReconnectGrace', () => {
  it('holds a host not heard from until the grace ends, and lets one heard from be judged at once', () => {
    const grace = new ReconnectGrace(60_000);
    expect(grace.allows('h1', 59_999)).toBe(false);
    grace.heard('h1', 1_000);
    expect(grace.allows('h1', 1_001)).toBe(true);
    expect(grace.allows('h2', 59_999)).toBe(false);
    expect(grace.over(59_999)).toBe(false);
    expect(grace.allows('h2', 60_000)).toBe(true);
    expect(grace.over(60_000)).toBe(true);
  });

  it('in a group, lets a host connected to another member be judged (that member recorded its hello)', () => {
    const elsewhere = new Set(['h2']);
    const grace = new ReconnectGrace(60_000, (host) => elsewhere.has(host));
    expect(grace.allows('h2', 0)).toBe(true);
    expect(grace.allows('h3', 0)).toBe(false);
  });

  it('none() judges every host at once, heard from or not', () => {
    expect(ReconnectGrace.none().allows('anyone', Number.MIN_SAFE_INTEGER)).toBe(true);
    expect(ReconnectGrace.none().over(Number.MIN_SAFE_INTEGER)).toBe(true);
  });
});
