import { describe, expect, it } from 'vitest';
import { PreflightQueue } from '../src/orders/preflight-queue.js';

/** A piece of work that runs until the test lets it finish. */
function held() {
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  return { finish, work: () => done };
}

describe('PreflightQueue', () => {
  it('runs at most `running` at once, lets `waiting` more wait their turn in order, and turns the rest away', async () => {
    const queue = new PreflightQueue({ running: 2, waiting: 2 });
    const started: number[] = [];
    const pieces = Array.from({ length: 6 }, () => held());
    const runs = pieces.map((piece, i) =>
      queue.run(async () => {
        started.push(i);
        await piece.work();
      }),
    );
    expect(await Promise.all([runs[4], runs[5]])).toEqual([false, false]);
    expect(started).toEqual([0, 1]);
    pieces[1]?.finish();
    await expect.poll(() => started).toEqual([0, 1, 2]);
    pieces[0]?.finish();
    await expect.poll(() => started).toEqual([0, 1, 2, 3]);
    for (const piece of pieces) piece.finish();
    expect(await Promise.all(runs.slice(0, 4))).toEqual([true, true, true, true]);
    // All done: the next runs at once again.
    let ranAgain = false;
    expect(
      await queue.run(async () => {
        ranAgain = true;
      }),
    ).toBe(true);
    expect(ranAgain).toBe(true);
  });

  it('tells each piece of work how long it waited for its turn', async () => {
    let now = 1000;
    const queue = new PreflightQueue({ running: 1, waiting: 1 }, () => now);
    const first = held();
    const waits: number[] = [];
    const one = queue.run(async (waited) => {
      waits.push(waited);
      await first.work();
    });
    const two = queue.run(async (waited) => void waits.push(waited));
    now += 250;
    first.finish();
    await Promise.all([one, two]);
    expect(waits).toEqual([0, 250]);
  });

  it('gives the slot back when the work throws', async () => {
    const queue = new PreflightQueue({ running: 1, waiting: 0 });
    await expect(queue.run(async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await queue.run(async () => {})).toBe(true);
  });
});
