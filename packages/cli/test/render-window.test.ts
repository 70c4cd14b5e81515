import { describe, expect, it } from 'vitest';
import { describeWindow } from '../src/render-window.js';

const NOW = new Date('2030-01-08T01:30:05Z');

describe('describeWindow', () => {
  it('counts down to the next opening while the window is closed', () => {
    const window = {
      open: false,
      opensAt: '2030-01-08T02:00:00.000Z',
      cutoffAt: '2030-01-08T02:45:00.000Z',
      closesAt: '2030-01-08T03:00:00.000Z',
    };
    expect(describeWindow({ window }, NOW)).toBe('maintenance window opens in 29m 55s (2030-01-08T02:00:00.000Z)');
    // One second later, one second less: the watch redraws it every second.
    expect(describeWindow({ window }, new Date(NOW.getTime() + 1000))).toBe(
      'maintenance window opens in 29m 54s (2030-01-08T02:00:00.000Z)',
    );
  });

  it('counts down to the cutoff and the close while waves may start', () => {
    const window = {
      open: true,
      opensAt: '2030-01-08T01:00:00.000Z',
      cutoffAt: '2030-01-08T01:45:00.000Z',
      closesAt: '2030-01-08T02:00:00.000Z',
    };
    expect(describeWindow({ window }, NOW)).toBe('maintenance window open: new waves for 14m 55s, closes in 29m 55s');
  });

  it('says nothing for a rollout without a window', () => {
    expect(describeWindow({}, NOW)).toBeUndefined();
  });
});
