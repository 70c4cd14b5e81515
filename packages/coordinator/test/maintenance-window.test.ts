import { FleetError, type MaintenanceWindow } from '@fleetpatch/shared';
import cron from 'node-cron';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { canStartWave, currentWindow, nextWindowStart, validateWindow } from '../src/schedule/maintenance-window.js';
import { WindowScheduler } from '../src/schedule/window-scheduler.js';

const at = (iso: string) => Date.parse(iso);
const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

function win(cronExpr: string, durationMinutes: number, cutoffMinutes = 0, timezone = 'UTC'): MaintenanceWindow {
  return { cron: cronExpr, timezone, durationMinutes, cutoffMinutes };
}

function refusal(window: MaintenanceWindow): FleetError {
  try {
    validateWindow(window);
  } catch (err) {
    if (err instanceof FleetError) return err;
    throw err;
  }
  throw new Error('window was accepted');
}

describe('a daily window (02:00 UTC for 60 minutes, cutoff 15)', () => {
  const daily = win('0 2 * * *', 60, 15);

  it('is open from the fire time, and says when it cuts off and closes', () => {
    expect(currentWindow(daily, at('2025-01-15T02:30:00Z'))).toEqual({
      opensAt: at('2025-01-15T02:00:00Z'),
      cutoffAt: at('2025-01-15T02:45:00Z'),
      closesAt: at('2025-01-15T03:00:00Z'),
    });
    expect(currentWindow(daily, at('2025-01-15T02:00:00Z'))?.opensAt).toBe(at('2025-01-15T02:00:00Z'));
  });

  it('is closed before it opens and from the moment it closes', () => {
    expect(currentWindow(daily, at('2025-01-15T01:59:59.999Z'))).toBeNull();
    expect(currentWindow(daily, at('2025-01-15T03:00:00Z'))).toBeNull();
    expect(currentWindow(daily, at('2025-01-15T12:00:00Z'))).toBeNull();
  });

  it('lets a wave start only inside the window and before the cutoff', () => {
    expect(canStartWave(daily, at('2025-01-15T01:59:00Z'))).toBe(false);
    expect(canStartWave(daily, at('2025-01-15T02:00:00Z'))).toBe(true);
    expect(canStartWave(daily, at('2025-01-15T02:44:59Z'))).toBe(true);
    expect(canStartWave(daily, at('2025-01-15T02:45:00Z'))).toBe(false);
    expect(canStartWave(daily, at('2025-01-15T02:59:00Z'))).toBe(false);
  });

  it('gives the next start strictly after now', () => {
    expect(iso(nextWindowStart(daily, at('2025-01-15T01:00:00Z')))).toBe('2025-01-15T02:00:00.000Z');
    expect(iso(nextWindowStart(daily, at('2025-01-15T02:00:00Z')))).toBe('2025-01-16T02:00:00.000Z');
    expect(iso(nextWindowStart(daily, at('2025-01-15T02:30:00Z')))).toBe('2025-01-16T02:00:00.000Z');
    expect(iso(nextWindowStart(daily, at('2025-12-31T23:00:00Z')))).toBe('2026-01-01T02:00:00.000Z');
  });
});

describe('windows that cross midnight', () => {
  const late = win('0 23 * * *', 180, 30);

  it('stays open into the next day', () => {
    const w = currentWindow(late, at('2025-01-16T01:00:00Z'));
    expect(iso(w?.opensAt)).toBe('2025-01-15T23:00:00.000Z');
    expect(iso(w?.cutoffAt)).toBe('2025-01-16T01:30:00.000Z');
    expect(iso(w?.closesAt)).toBe('2025-01-16T02:00:00.000Z');
    expect(canStartWave(late, at('2025-01-16T01:29:00Z'))).toBe(true);
    expect(canStartWave(late, at('2025-01-16T01:30:00Z'))).toBe(false);
    expect(currentWindow(late, at('2025-01-16T02:00:00Z'))).toBeNull();
  });

  it('counts a multi-day duration from the opening', () => {
    const weekend = win('0 18 * * 5', 60 * 60, 60); // Friday 18:00 until Monday 06:00
    expect(iso(currentWindow(weekend, at('2025-01-20T04:00:00Z'))?.opensAt)).toBe('2025-01-17T18:00:00.000Z');
    expect(canStartWave(weekend, at('2025-01-20T05:00:00Z'))).toBe(false);
    expect(currentWindow(weekend, at('2025-01-20T06:00:00Z'))).toBeNull();
  });
});

describe('a weekday-only window (22:00 Monday to Friday, 4 hours)', () => {
  const weeknights = win('0 22 * * 1-5', 240, 30);

  it('opens on a weekday and runs into the next morning', () => {
    // 2025-01-17 is a Friday
    expect(iso(currentWindow(weeknights, at('2025-01-17T23:00:00Z'))?.opensAt)).toBe('2025-01-17T22:00:00.000Z');
    expect(iso(currentWindow(weeknights, at('2025-01-18T01:00:00Z'))?.opensAt)).toBe('2025-01-17T22:00:00.000Z');
  });

  it('does not open on Saturday or Sunday', () => {
    expect(currentWindow(weeknights, at('2025-01-18T22:30:00Z'))).toBeNull();
    expect(currentWindow(weeknights, at('2025-01-19T23:00:00Z'))).toBeNull();
    expect(canStartWave(weeknights, at('2025-01-19T22:00:00Z'))).toBe(false);
  });

  it('resumes on Monday', () => {
    expect(iso(nextWindowStart(weeknights, at('2025-01-18T03:00:00Z')))).toBe('2025-01-20T22:00:00.000Z');
    expect(iso(nextWindowStart(weeknights, at('2025-01-17T22:00:00Z')))).toBe('2025-01-20T22:00:00.000Z');
  });
});

describe('a window in Europe/Berlin (02:00 local for 60 minutes)', () => {
  const berlin = win('0 2 * * *', 60, 10, 'Europe/Berlin');

  it('opens at 02:00 CET in winter (01:00 UTC) and 02:00 CEST in summer (00:00 UTC)', () => {
    expect(iso(currentWindow(berlin, at('2025-01-15T01:30:00Z'))?.opensAt)).toBe('2025-01-15T01:00:00.000Z');
    expect(currentWindow(berlin, at('2025-01-15T00:30:00Z'))).toBeNull();
    expect(iso(currentWindow(berlin, at('2025-07-15T00:30:00Z'))?.opensAt)).toBe('2025-07-15T00:00:00.000Z');
    expect(currentWindow(berlin, at('2025-07-15T01:30:00Z'))).toBeNull();
  });

  it('skips the night 02:00 does not exist (clocks go 02:00 → 03:00 on 30 March 2025)', () => {
    expect(iso(nextWindowStart(berlin, at('2025-03-29T00:00:00Z')))).toBe('2025-03-29T01:00:00.000Z');
    expect(iso(nextWindowStart(berlin, at('2025-03-29T12:00:00Z')))).toBe('2025-03-31T00:00:00.000Z');
    expect(currentWindow(berlin, at('2025-03-30T00:30:00Z'))).toBeNull();
    expect(currentWindow(berlin, at('2025-03-30T01:30:00Z'))).toBeNull();
  });

  it('opens once on the night 02:00 happens twice (26 October 2025), at the occurrence node-cron fires', () => {
    expect(iso(nextWindowStart(berlin, at('2025-10-25T12:00:00Z')))).toBe('2025-10-26T01:00:00.000Z');
    expect(currentWindow(berlin, at('2025-10-26T00:30:00Z'))).toBeNull();
    expect(currentWindow(berlin, at('2025-10-26T01:30:00Z'))).toEqual({
      opensAt: at('2025-10-26T01:00:00Z'),
      cutoffAt: at('2025-10-26T01:50:00Z'),
      closesAt: at('2025-10-26T02:00:00Z'),
    });
    expect(iso(nextWindowStart(berlin, at('2025-10-26T01:00:00Z')))).toBe('2025-10-27T01:00:00.000Z');
  });

  it('measures the duration in elapsed time across a clock change', () => {
    // 01:30 CET + 120 minutes = 04:30 CEST, because the clock skipped an hour in between.
    const overNight = win('30 1 * * *', 120, 0, 'Europe/Berlin');
    const w = currentWindow(overNight, at('2025-03-30T02:00:00Z'));
    expect(iso(w?.opensAt)).toBe('2025-03-30T00:30:00.000Z');
    expect(iso(w?.closesAt)).toBe('2025-03-30T02:30:00.000Z');
  });
});

describe('agreement with node-cron', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  // node-cron's getNextRuns starts from `new Date()`; a faked Date lets it walk from any instant.
  it.each([
    ['0 2 * * *', 'Europe/Berlin', '2025-03-27T12:00:00Z'],
    ['0 2 * * *', 'Europe/Berlin', '2025-10-24T12:00:00Z'],
    ['30 1 * * *', 'America/New_York', '2025-10-31T12:00:00Z'],
    ['*/20 1-3 * * 0', 'Europe/Berlin', '2025-10-25T12:00:00Z'],
    ['0 22 * * 1-5', 'Asia/Kolkata', '2025-01-16T12:00:00Z'],
    ['15 3 L * *', 'Australia/Sydney', '2025-03-01T00:00:00Z'],
    ['0 0 9 * * 5L', 'UTC', '2025-01-01T00:00:00Z'],
    // Clocks that change by half an hour (Lord Howe, 02:00 → 02:30 on 5 October 2025), at 02:45
    // (Chatham, +12:45 → +13:45 on 28 September), at midnight (Santiago: 00:00 does not exist on
    // 7 September) and by two hours (Troll, 01:00 → 03:00 on 30 March); an offset of +05:45.
    ['15 2 * * *', 'Australia/Lord_Howe', '2025-10-03T00:00:00Z'],
    ['30 1 * * *', 'Australia/Lord_Howe', '2025-04-04T00:00:00Z'],
    ['45 2 * * *', 'Pacific/Chatham', '2025-09-26T00:00:00Z'],
    ['0 0 * * *', 'America/Santiago', '2025-09-05T00:00:00Z'],
    ['30 23 * * *', 'America/Santiago', '2025-04-04T00:00:00Z'],
    ['30 1 * * *', 'Antarctica/Troll', '2025-03-28T00:00:00Z'],
    ['0 2 * * *', 'Asia/Kathmandu', '2025-03-28T00:00:00Z'],
  ])('fires where node-cron fires: "%s" in %s from %s', (expr, timezone, from) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(at(from));
    const task = cron.createTask(expr, () => undefined, { timezone });
    const expected = task.getNextRuns(8).map((d) => d.toISOString());
    void task.destroy();
    vi.useRealTimers();

    const window = win(expr, 5, 0, timezone);
    const actual: string[] = [];
    let now = at(from);
    for (let i = 0; i < 8; i++) {
      now = nextWindowStart(window, now);
      actual.push(new Date(now).toISOString());
      expect(currentWindow(window, now)?.opensAt).toBe(now);
    }
    expect(actual).toEqual(expected);
  });
});

describe('other cron shapes', () => {
  it('honours a seconds field', () => {
    const w = win('30 0 2 * * *', 10);
    expect(iso(nextWindowStart(w, at('2025-01-15T02:00:00Z')))).toBe('2025-01-15T02:00:30.000Z');
    expect(currentWindow(w, at('2025-01-15T02:00:10Z'))).toBeNull();
    expect(iso(currentWindow(w, at('2025-01-15T02:05:00Z'))?.opensAt)).toBe('2025-01-15T02:00:30.000Z');
  });

  it('accepts names and nicknames', () => {
    expect(iso(nextWindowStart(win('0 4 * * sat', 60), at('2025-01-15T00:00:00Z')))).toBe('2025-01-18T04:00:00.000Z');
    expect(iso(nextWindowStart(win('@daily', 60), at('2025-01-15T10:00:00Z')))).toBe('2025-01-16T00:00:00.000Z');
  });

  it('lets the latest of overlapping occurrences decide', () => {
    const hourly = win('0 * * * *', 120, 30);
    expect(iso(currentWindow(hourly, at('2025-01-15T10:45:00Z'))?.opensAt)).toBe('2025-01-15T10:00:00.000Z');
    expect(canStartWave(hourly, at('2025-01-15T10:45:00Z'))).toBe(true);
  });

  it('finds a yearly window', () => {
    const newYear = win('0 0 1 1 *', 60);
    expect(iso(nextWindowStart(newYear, at('2025-01-01T00:00:00Z')))).toBe('2026-01-01T00:00:00.000Z');
  });
});

describe('validateWindow', () => {
  it('accepts a sound window', () => {
    expect(() => validateWindow(win('0 2 * * *', 60, 15, 'Europe/Berlin'))).not.toThrow();
  });

  it('refuses an invalid cron expression and names the field', () => {
    const hour = refusal(win('0 25 * * *', 60));
    expect(hour.code).toBe('validation_failed');
    expect(hour.message).toMatch(/hour/);
    expect(hour.details).toMatchObject({ field: 'cron' });
    expect(refusal(win('every night please', 60)).message).toMatch(/fields/);
    expect(refusal(win('0 0 31 2 *', 60)).details).toMatchObject({ field: 'cron' });
  });

  it('refuses an unknown time zone', () => {
    const err = refusal(win('0 2 * * *', 60, 0, 'Mars/Olympus_Mons'));
    expect(err.code).toBe('validation_failed');
    expect(err.message).toMatch(/Mars\/Olympus_Mons/);
    expect(err.details).toMatchObject({ field: 'timezone' });
  });

  it('refuses a cutoff that leaves no time to start a wave', () => {
    expect(refusal(win('0 2 * * *', 60, 60)).details).toMatchObject({ field: 'cutoffMinutes' });
    expect(refusal(win('0 2 * * *', 60, 90)).details).toMatchObject({ field: 'cutoffMinutes' });
  });

  it('is what the window functions rely on for the time zone too', () => {
    expect(() => currentWindow(win('0 2 * * *', 60, 0, 'Nowhere/Land'), Date.now())).toThrow(FleetError);
  });
});

describe('WindowScheduler', () => {
  const log = pino({ level: 'silent' });
  const fleetTasks = () =>
    [...cron.getTasks().values()].filter((t) => t.name?.startsWith('fleetpatch-window:')).map((t) => t.name);

  afterEach(() => {
    vi.useRealTimers();
  });

  it('registers a node-cron task per rollout, replaces it on re-watch, and removes it on unwatch', () => {
    const scheduler = new WindowScheduler({ onOpen: () => {}, onCutoff: () => {}, log });
    scheduler.watch('r1', win('0 2 * * *', 60));
    scheduler.watch('r2', win('0 22 * * 1-5', 120, 30, 'Europe/Berlin'));
    scheduler.watch('r2', win('0 23 * * 1-5', 120, 30, 'Europe/Berlin'));
    expect(fleetTasks().sort()).toEqual(['fleetpatch-window:r1', 'fleetpatch-window:r2']);
    const r2 = [...cron.getTasks().values()].find((t) => t.name === 'fleetpatch-window:r2');
    expect(r2?.getPattern()).toBe('0 23 * * 1-5');
    expect(r2?.getStatus()).toBe('idle');

    scheduler.unwatch('r1');
    scheduler.unwatch('never-watched');
    expect(fleetTasks()).toEqual(['fleetpatch-window:r2']);
    expect(scheduler.isWatching('r1')).toBe(false);

    scheduler.stop();
    scheduler.stop();
    expect(fleetTasks()).toEqual([]);
    expect(() => scheduler.watch('r3', win('0 2 * * *', 60))).toThrow(FleetError);
  });

  it('refuses an invalid window without registering anything', () => {
    const scheduler = new WindowScheduler({ onOpen: () => {}, onCutoff: () => {}, log });
    expect(() => scheduler.watch('r1', win('0 2 * * *', 60, 0, 'Not/AZone'))).toThrow(FleetError);
    expect(() => scheduler.watch('r1', win('61 * * * *', 60))).toThrow(FleetError);
    expect(fleetTasks()).toEqual([]);
    scheduler.stop();
  });

  it('calls onOpen when the window opens and onCutoff at the cutoff', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(at('2025-01-06T01:59:58Z'));
    const calls: string[] = [];
    const scheduler = new WindowScheduler({
      onOpen: (id) => calls.push(`open ${id} ${new Date().toISOString()}`),
      onCutoff: (id) => calls.push(`cutoff ${id} ${new Date().toISOString()}`),
      log,
    });
    scheduler.watch('r1', win('0 2 * * *', 60, 15));

    await vi.advanceTimersByTimeAsync(3_000);
    expect(calls).toEqual(['open r1 2025-01-06T02:00:00.000Z']);
    await vi.advanceTimersByTimeAsync(45 * 60_000);
    expect(calls).toEqual(['open r1 2025-01-06T02:00:00.000Z', 'cutoff r1 2025-01-06T02:45:00.000Z']);
    scheduler.stop();
    await vi.advanceTimersByTimeAsync(2 * 86_400_000);
    expect(calls).toHaveLength(2);
  });

  it('arms the cutoff of a window already open when watched (a restart) without calling onOpen', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(at('2025-01-06T02:10:00Z'));
    const calls: string[] = [];
    const scheduler = new WindowScheduler({
      onOpen: (id) => calls.push(`open ${id}`),
      onCutoff: (id) => calls.push(`cutoff ${id} ${new Date().toISOString()}`),
      log,
    });
    scheduler.watch('r1', win('0 2 * * *', 60, 15));
    await vi.advanceTimersByTimeAsync(40 * 60_000);
    expect(calls).toEqual(['cutoff r1 2025-01-06T02:45:00.000Z']);
    scheduler.stop();
  });

  it('does not fire for an unwatched rollout, and survives a throwing callback', async () => {
    vi.useFakeTimers();
    vi.setSystemTime(at('2025-01-06T01:59:00Z'));
    const opened: string[] = [];
    const scheduler = new WindowScheduler({
      onOpen: (id) => {
        opened.push(id);
        throw new Error('engine hiccup');
      },
      onCutoff: () => {},
      log,
    });
    scheduler.watch('r1', win('0 2 * * *', 60));
    scheduler.watch('r2', win('0 2 * * *', 60));
    scheduler.unwatch('r2');
    await vi.advanceTimersByTimeAsync(2 * 60_000);
    expect(opened).toEqual(['r1']);
    await vi.advanceTimersByTimeAsync(86_400_000);
    expect(opened).toEqual(['r1', 'r1']);
    scheduler.stop();
  });

  it('fires for real through node-cron (every second)', async () => {
    let resolveOpened: (id: string) => void = () => {};
    const opened = new Promise<string>((resolve) => {
      resolveOpened = resolve;
    });
    const scheduler = new WindowScheduler({ onOpen: (id) => resolveOpened(id), onCutoff: () => {}, log });
    try {
      scheduler.watch('live', win('* * * * * *', 1));
      let deadline: NodeJS.Timeout | undefined;
      const timedOut = new Promise<string>((resolve) => {
        deadline = setTimeout(() => resolve('no window opened within 10 s'), 10_000);
      });
      expect(await Promise.race([opened, timedOut])).toBe('live');
      clearTimeout(deadline);
    } finally {
      scheduler.stop();
    }
  });
});
