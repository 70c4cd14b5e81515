import { FleetError, type MaintenanceWindow } from '@fleetpatch/shared';
import cron, { type ParsedFields, type ScheduledTask } from 'node-cron';

/**
 * Maintenance windows as pure functions of (window, instant). A window opens at every instant
 * node-cron would fire the expression in the window's timezone, and stays open `durationMinutes`.
 *
 * node-cron stays the authority on what matches: its parser gives the candidate times of day and
 * its matcher (`ScheduledTask.match`) accepts or rejects each candidate instant, so the L / W / #
 * day tokens and node-cron's AND of day-of-month with day-of-week mean the same here as in the
 * scheduler that fires the callbacks. Local wall time is turned into instants the way node-cron's
 * own walker does it, so both agree on DST nights:
 * - a time that does not exist (spring forward, 02:30 in Europe/Berlin on the last Sunday of March)
 *   never fires, so that day has no window;
 * - a time that exists twice (fall back) fires once, at the occurrence node-cron picks (in
 *   Europe/Berlin the second one, 02:00 CET).
 */

export interface WindowOccurrence {
  opensAt: number;
  /** No new wave starts at or after this instant. */
  cutoffAt: number;
  closesAt: number;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 3_600_000;
const DAY_MS = 86_400_000;
/**
 * How far ahead a fire time is looked for. Five years covers every expression that fires on a
 * calendar date (29 February included); an expression with no fire time in that span is refused.
 */
const HORIZON_DAYS = 5 * 366;

export function validateWindow(window: MaintenanceWindow): void {
  const validation = cron.validateDetailed(window.cron);
  if (!validation.valid) {
    const reasons = validation.errors.map((e) => `${e.field}: ${e.message}`).join('; ');
    throw new FleetError('validation_failed', `maintenance window cron "${window.cron}" is invalid: ${reasons}`, {
      field: 'cron',
      errors: validation.errors,
    });
  }
  if (!isValidTimezone(window.timezone)) {
    throw new FleetError('validation_failed', `maintenance window timezone "${window.timezone}" is not an IANA zone`, {
      field: 'timezone',
    });
  }
  if (!Number.isInteger(window.durationMinutes) || window.durationMinutes < 1) {
    throw new FleetError('validation_failed', 'maintenance window durationMinutes must be a positive integer', {
      field: 'durationMinutes',
    });
  }
  if (!Number.isInteger(window.cutoffMinutes) || window.cutoffMinutes < 0) {
    throw new FleetError('validation_failed', 'maintenance window cutoffMinutes must be a non-negative integer', {
      field: 'cutoffMinutes',
    });
  }
  if (window.cutoffMinutes >= window.durationMinutes) {
    throw new FleetError(
      'validation_failed',
      `maintenance window cutoffMinutes (${window.cutoffMinutes}) must be less than durationMinutes (${window.durationMinutes}), or no wave could ever start`,
      { field: 'cutoffMinutes' },
    );
  }
  // A rollout waiting for a window that never opens would wait forever, silently.
  if (findNextFire(window, Date.now()) === null) {
    throw new FleetError(
      'validation_failed',
      `maintenance window cron "${window.cron}" never fires within ${HORIZON_DAYS / 366} years`,
      { field: 'cron' },
    );
  }
}

/**
 * The occurrence containing `now`. When occurrences overlap (the cron fires more often than the
 * window lasts), the latest one wins: it is the one whose cutoff is furthest away.
 */
export function currentWindow(window: MaintenanceWindow, now: number): WindowOccurrence | null {
  const opensAt = findLatestFire(window, now, window.durationMinutes * MINUTE_MS);
  return opensAt === null ? null : occurrenceAt(window, opensAt);
}

export function canStartWave(window: MaintenanceWindow, now: number): boolean {
  const occurrence = currentWindow(window, now);
  return occurrence !== null && now < occurrence.cutoffAt;
}

/** The next instant strictly after `now` at which a window opens. */
export function nextWindowStart(window: MaintenanceWindow, now: number): number {
  const next = findNextFire(window, now);
  if (next === null) {
    throw new FleetError(
      'validation_failed',
      `maintenance window cron "${window.cron}" never fires within ${HORIZON_DAYS / 366} years`,
      { field: 'cron' },
    );
  }
  return next;
}

export function occurrenceAt(window: MaintenanceWindow, opensAt: number): WindowOccurrence {
  return {
    opensAt,
    cutoffAt: opensAt + (window.durationMinutes - window.cutoffMinutes) * MINUTE_MS,
    closesAt: opensAt + window.durationMinutes * MINUTE_MS,
  };
}

// --- search -------------------------------------------------------------------------------------

interface Matcher {
  fields: ParsedFields;
  seconds: number[];
  minutes: number[];
  hours: number[];
  task: ScheduledTask;
  /** node-cron's verdict on a calendar day alone; only built when L / W / # tokens are present. */
  dayTask: ScheduledTask | undefined;
}

interface WallTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
}

/*
 * Both searches walk local calendar days and, inside a day, the expression's times of day in order,
 * turning each into an instant only when it can matter. "Wall time read as UTC minus the offset at
 * now" is exact while the offset does not change, and off by at most the size of the change
 * otherwise, so candidates further than that from now are skipped without any Intl call; this keeps
 * "every second" expressions cheap.
 */

function findNextFire(window: MaintenanceWindow, now: number): number | null {
  const matcher = matcherFor(window);
  const tz = window.timezone;
  const offsetNow = offsetMs(now, tz);
  // An instant after now whose offset is lower (clocks going back) reads as an earlier wall time.
  const slack = Math.max(0, offsetNow - offsetMs(now + DAY_MS, tz));
  // Start a day early for the same reason.
  let date = shiftDay(wallTime(now, tz), -1);
  for (let i = 0; i <= HORIZON_DAYS + 1; i++, date = shiftDay(date, 1)) {
    if (!dayMatches(matcher, date)) continue;
    for (const hour of matcher.hours) {
      if (wallAsUtc({ ...date, hour }) + HOUR_MS - offsetNow < now - slack) continue;
      for (const minute of matcher.minutes) {
        for (const second of matcher.seconds) {
          const wall = { ...date, hour, minute, second };
          if (wallAsUtc(wall) - offsetNow < now - slack) continue;
          const at = fireInstant(wall, tz, matcher);
          if (at !== null && at > now) return at;
        }
      }
    }
  }
  return null;
}

function findLatestFire(window: MaintenanceWindow, now: number, lookbackMs: number): number | null {
  const matcher = matcherFor(window);
  const tz = window.timezone;
  const earliest = now - lookbackMs;
  const offsetNow = offsetMs(now, tz);
  // A lookback is at most 7 days, so it spans at most one offset change: the offsets are these two.
  const offsetBefore = offsetMs(earliest - DAY_MS, tz);
  const slackAbove = Math.max(0, offsetBefore - offsetNow);
  const slackBelow = Math.max(0, offsetNow - offsetBefore);
  const hours = [...matcher.hours].reverse();
  const minutes = [...matcher.minutes].reverse();
  const seconds = [...matcher.seconds].reverse();
  const days = Math.ceil(lookbackMs / DAY_MS) + 2;
  let date = shiftDay(wallTime(now, tz), 1);
  for (let i = 0; i <= days; i++, date = shiftDay(date, -1)) {
    if (!dayMatches(matcher, date)) continue;
    for (const hour of hours) {
      if (wallAsUtc({ ...date, hour }) - offsetNow > now + slackAbove) continue;
      for (const minute of minutes) {
        for (const second of seconds) {
          const wall = { ...date, hour, minute, second };
          const approx = wallAsUtc(wall) - offsetNow;
          if (approx > now + slackAbove) continue;
          if (approx <= earliest - slackBelow) return null;
          const at = fireInstant(wall, tz, matcher);
          if (at === null || at > now) continue;
          // Existing wall times map to instants in the same order, so the first fire at or before now is the latest.
          return at > earliest ? at : null;
        }
      }
    }
  }
  return null;
}

/** The instant `wall` fires at, or null when that wall time does not exist or node-cron rejects it. */
function fireInstant(wall: WallTime, tz: string, matcher: Matcher): number | null {
  const at = localTimeToInstant(wall, tz);
  if (!sameWallTime(wallTime(at, tz), wall)) return null;
  return matcher.task.match(new Date(at)) ? at : null;
}

/**
 * node-cron's own conversion (its `localTimeToTimestamp`), reproduced so that an ambiguous wall
 * time resolves to the very instant node-cron fires at.
 */
function localTimeToInstant(wall: WallTime, tz: string): number {
  const guess = wallAsUtc(wall);
  const first = offsetMs(guess, tz);
  const candidate1 = guess - first;
  const second = offsetMs(candidate1, tz);
  if (second === first) return candidate1;
  const candidate2 = guess - second;
  if (sameWallTime(wallTime(candidate1, tz), wall)) return candidate1;
  if (sameWallTime(wallTime(candidate2, tz), wall)) return candidate2;
  return Math.max(candidate1, candidate2);
}

function dayMatches(matcher: Matcher, date: Pick<WallTime, 'year' | 'month' | 'day'>): boolean {
  const { fields } = matcher;
  if (!fields.month.includes(date.month)) return false;
  if (matcher.dayTask) {
    // The day matcher is UTC, so noon UTC of the date reads as that very calendar date.
    return matcher.dayTask.match(new Date(Date.UTC(date.year, date.month - 1, date.day, 12)));
  }
  // Without a day matcher, a token means "maybe": the per-instant match decides.
  const numeric = (values: (number | string)[]) => values.every((v) => typeof v === 'number');
  if (numeric(fields.dayOfMonth) && !fields.dayOfMonth.includes(date.day)) return false;
  const weekday = new Date(Date.UTC(date.year, date.month - 1, date.day)).getUTCDay();
  return !numeric(fields.dayOfWeek) || fields.dayOfWeek.includes(weekday);
}

// node-cron keeps tasks in a global registry; a matcher is a task that is never started and is
// destroyed at once (which unregisters it), so it holds no timer and never shows in `getTasks()`.
const MATCHER_CACHE_LIMIT = 256;
const matchers = new Map<string, Matcher>();

function matcherFor(window: MaintenanceWindow): Matcher {
  const key = `${window.timezone}\u0000${window.cron}`;
  const cached = matchers.get(key);
  if (cached) return cached;
  if (!isValidTimezone(window.timezone)) {
    throw new FleetError('validation_failed', `maintenance window timezone "${window.timezone}" is not an IANA zone`, {
      field: 'timezone',
    });
  }
  let fields: ParsedFields;
  let task: ScheduledTask;
  try {
    fields = cron.parse(window.cron);
    task = matcherTask(window.cron, window.timezone);
  } catch (err) {
    throw new FleetError(
      'validation_failed',
      `maintenance window cron "${window.cron}" is invalid`,
      { field: 'cron', reason: err instanceof Error ? err.message : String(err) },
      { cause: err },
    );
  }
  const ascending = (values: number[]) => [...new Set(values)].sort((a, b) => a - b);
  const matcher: Matcher = {
    fields,
    seconds: ascending(fields.second),
    minutes: ascending(fields.minute),
    hours: ascending(fields.hour),
    task,
    dayTask: dayMatcherTask(window.cron, fields),
  };
  if (matchers.size >= MATCHER_CACHE_LIMIT) {
    const oldest = matchers.keys().next();
    if (!oldest.done) matchers.delete(oldest.value);
  }
  matchers.set(key, matcher);
  return matcher;
}

function matcherTask(expression: string, timezone: string): ScheduledTask {
  const task = cron.createTask(expression, () => undefined, { timezone });
  void task.destroy();
  return task;
}

/**
 * Day tokens (last day, nearest weekday, nth weekday) cannot be ruled out from the parsed numbers,
 * and trying every time of day on every day to find out costs an Intl call each. The same day
 * fields at a fixed time of day let node-cron judge a whole day in one call.
 */
function dayMatcherTask(expression: string, fields: ParsedFields): ScheduledTask | undefined {
  const hasTokens = [...fields.dayOfMonth, ...fields.dayOfWeek].some((v) => typeof v !== 'number');
  if (!hasTokens) return undefined;
  const parts = expression.trim().split(/\s+/);
  if (parts.length !== 5 && parts.length !== 6) return undefined;
  const [dayOfMonth, month, dayOfWeek] = parts.slice(-3);
  try {
    return matcherTask(`0 0 12 ${dayOfMonth} ${month} ${dayOfWeek}`, 'UTC');
  } catch {
    // Without it every day is tried time by time: slower, same answer.
    return undefined;
  }
}

// --- time zones ---------------------------------------------------------------------------------

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(tz: string): Intl.DateTimeFormat {
  let formatter = formatters.get(tz);
  if (!formatter) {
    formatter = new Intl.DateTimeFormat('en-US', {
      timeZone: tz,
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
    formatters.set(tz, formatter);
  }
  return formatter;
}

function isValidTimezone(tz: string): boolean {
  try {
    formatterFor(tz);
    return true;
  } catch {
    return false;
  }
}

function wallTime(at: number, tz: string): WallTime {
  const wall: WallTime = { year: 0, month: 0, day: 0, hour: 0, minute: 0, second: 0 };
  for (const part of formatterFor(tz).formatToParts(at)) {
    switch (part.type) {
      case 'year':
      case 'month':
      case 'day':
      case 'hour':
      case 'minute':
      case 'second':
        wall[part.type] = Number.parseInt(part.value, 10);
        break;
      default:
        break;
    }
  }
  // Some ICU versions still print midnight as 24 under h23.
  if (wall.hour === 24) wall.hour = 0;
  return wall;
}

/** Offset of `tz` from UTC at `at`, in ms (Berlin in summer: +7_200_000). */
function offsetMs(at: number, tz: string): number {
  const whole = Math.floor(at / 1000) * 1000;
  return wallAsUtc(wallTime(whole, tz)) - whole;
}

function wallAsUtc(wall: WallTime): number {
  return Date.UTC(wall.year, wall.month - 1, wall.day, wall.hour, wall.minute, wall.second);
}

function sameWallTime(a: WallTime, b: WallTime): boolean {
  return (
    a.year === b.year &&
    a.month === b.month &&
    a.day === b.day &&
    a.hour === b.hour &&
    a.minute === b.minute &&
    a.second === b.second
  );
}

function shiftDay(date: Pick<WallTime, 'year' | 'month' | 'day'>, days: number): WallTime {
  const d = new Date(Date.UTC(date.year, date.month - 1, date.day + days));
  return { year: d.getUTCFullYear(), month: d.getUTCMonth() + 1, day: d.getUTCDate(), hour: 0, minute: 0, second: 0 };
}
