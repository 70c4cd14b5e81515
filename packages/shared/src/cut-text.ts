/**
 * `text` in at most `max` UTF-16 units, an ellipsis last when it had to be cut; never half a
 * surrogate pair (PostgreSQL's jsonb refuses a lone one, and a terminal shows garbage).
 */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const last = text.charCodeAt(max - 2);
  const end = last >= 0xd800 && last <= 0xdbff ? max - 2 : max - 1;
  return `${text.slice(0, end)}…`;
}
