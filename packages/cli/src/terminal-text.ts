/**
 * Text from the server (patch titles, agent labels and facts, reasons, error messages) is an
 * attacker's bytes as far as a terminal goes: ESC starts CSI/OSC sequences that clear the screen,
 * retitle the window or rewrite the clipboard, and the C1 controls (U+0080–U+009F) do the same on
 * terminals that read them. Every such character is shown escaped (`\u001b`), as are the bidi
 * overrides that reorder what is shown ("Trojan Source"). Nothing is dropped: what was sent stays
 * visible.
 */
const UNSAFE = /[\p{Cc}\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

function escapeCharacter(c: string): string {
  return `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`;
}

/** One value (a cell, a title, a reason): every control character escaped, newlines included. */
export function printable(text: string): string {
  return text.replace(UNSAFE, escapeCharacter);
}

/**
 * A whole text about to be written (main.ts passes every line through it): its own newlines and tabs
 * kept, any other control escaped. `--json` output goes through it unchanged except for DEL, C1 and
 * bidi characters, which become `\u…` escapes: the same string to any JSON reader (JSON.stringify has
 * already escaped the C0 ones inside strings; raw newlines there are only whitespace between tokens).
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => (c === '\n' || c === '\t' ? c : escapeCharacter(c)));
}
