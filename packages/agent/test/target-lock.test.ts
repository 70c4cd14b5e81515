import { describe, expect, it } from 'vitest';
import { TargetLock } from '../src/orders/target-lock.js';

describe('TargetLock.holdWhenFree', () => {
  it('holds a free target at once', async () => {
    const lock = new TargetLock();
    const release = await lock.holdWhenFree('file /etc/x', new AbortController().signal);
    expect(lock.isHeld('file /etc/x')).toBe(true);
    release?.();
    expect(lock.isHeld('file /etc/x')).toBe(false);
  });

  it('waits until every holder let go, then holds it; another target does not wake it', async () => {
    const lock = new TargetLock();
    const first = lock.hold('file /etc/x');
    const second = lock.hold('file /etc/x');
    let held: (() => void) | undefined;
    const waiting = lock.holdWhenFree('file /etc/x', new AbortController().signal).then((release) => {
      held = release;
    });
    lock.hold('file /etc/y')();
    first();
    await Promise.resolve();
    expect(held).toBeUndefined();
    second();
    await waiting;
    expect(held).toBeDefined();
    expect(lock.isHeld('file /etc/x')).toBe(true);
  });

  it('waits again when someone took the target before it woke', async () => {
    const lock = new TargetLock();
    const first = lock.hold('t');
    let held = false;
    const waiting = lock.holdWhenFree('t', new AbortController().signal).then(() => {
      held = true;
    });
    first();
    const taken = lock.hold('t'); // in the same turn, before the waiter runs
    await new Promise((resolve) => setImmediate(resolve));
    expect(held).toBe(false);
    taken();
    await waiting;
    expect(held).toBe(true);
  });

  it('gives up when its signal aborts, holding nothing', async () => {
    const lock = new TargetLock();
    const first = lock.hold('t');
    const abort = new AbortController();
    const waiting = lock.holdWhenFree('t', abort.signal);
    abort.abort();
    expect(await waiting).toBeUndefined();
    first();
    expect(lock.isHeld('t')).toBe(false);
  });
});
