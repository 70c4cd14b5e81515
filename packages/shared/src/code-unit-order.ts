/**
 * Plain UTF-16 code-unit order, as `<` on strings compares: far cheaper than `localeCompare`, and the
 * same on every machine whatever its locale (host ids, package names and join-token secrets are ASCII).
 */
export function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
