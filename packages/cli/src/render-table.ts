import { printable } from './terminal-text.js';

/** Left-aligned columns separated by two spaces; the header row is upper-case. No trailing spaces. */
export function renderTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  // A cell is one value from the server: a newline or escape in it would forge rows or drive the terminal.
  const all = [headers.map((h) => h.toUpperCase()), ...rows.map((row) => row.map(printable))];
  const widths = headers.map((_, col) => Math.max(...all.map((row) => (row[col] ?? '').length)));
  return all
    .map((row) =>
      widths
        .map((width, col) => (row[col] ?? '').padEnd(width))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** "k=v,k2=v2", or "-" when there are none. */
export function formatLabels(labels: Readonly<Record<string, string>>): string {
  const entries = Object.entries(labels);
  return entries.length === 0 ? '-' : entries.map(([k, v]) => `${k}=${v}`).join(',');
}

/** "12s ago", "5m ago", "3h ago", "2d ago"; "never" for null. */
export function formatAge(iso: string | null, now: Date): string {
  if (iso === null) return 'never';
  const seconds = Math.max(0, Math.round((now.getTime() - Date.parse(iso)) / 1000));
  if (Number.isNaN(seconds)) return iso;
  if (seconds < 60) return `${seconds}s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ago`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)}h ago`;
  return `${Math.floor(seconds / 86_400)}d ago`;
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}
