/**
 * Text from the server (patch titles, agent labels and facts, reasons, error messages) is an
 * attacker's bytes as far as a terminal goes: ESC starts CSI/OSC sequences that clear the screen,
 * retitle the window or rewrite the clipboard, and the C1 controls (U+0080–U+009F) do the same on
 * terminals that read them. A newline or carriage return in a value starts (or overwrites) a line
 * the reader takes for the CLI's own. Format characters (Cf) draw nothing yet change what is read:
 * the bidi marks, embeddings, overrides and isolates reorder the text ("Trojan Source"), and the
 * zero-width space and joiners, the word joiner, the BOM, the Arabic letter mark and the soft hyphen
 * make two different values look the same (`role=w\u200beb` shown as `role=web`). The line and
 * paragraph separators (Zl, Zp) break lines in some terminals and viewers. Unicode's other default
 * ignorable code points — the characters a renderer is to draw as nothing when it does not support
 * them — do the same without being format characters: the Hangul fillers (U+115F, U+1160, U+3164,
 * U+FFA0) are letters that show as blank, the variation selectors (U+FE00–U+FE0F, U+E0100–U+E01EF)
 * show as nothing after any character and can carry a hidden payload, the combining grapheme joiner,
 * the Mongolian free variation selectors, and the code points reserved as ignorable (U+FFF0–U+FFF8,
 * U+E0000–U+E0FFF) that no font draws. Every such character is shown escaped (`\u001b`); nothing is
 * dropped: what was sent stays visible.
 *
 * The price, accepted for safety: an emoji sequence built with the zero-width joiner (woman, ZWJ,
 * laptop: a technologist) shows as its parts with `\u200d` between them, a subdivision flag
 * (England's) as a black flag then its tag characters escaped, and an emoji's variation selector
 * (the U+FE0F of a red heart or a keycap) as `\ufe0f` after its base character. Everything else
 * prints as sent: accents, CJK, Hangul syllables and every jamo but the fillers, right-to-left
 * letters, emoji and their skin tones, regional-indicator flags.
 */
const UNSAFE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/gu;

/**
 * `\u` and four hex digits per UTF-16 unit, as JSON and JavaScript write them: a character beyond
 * U+FFFF (the tag characters U+E0020–E007F, the variation selectors from U+E0100) becomes its
 * surrogate pair, so that `--json` output read back is still the same string (`\ue0041` would read
 * as U+E004 then "1").
 */
function escapeCharacter(c: string): string {
  let escaped = '';
  for (let i = 0; i < c.length; i++) escaped += `\\u${c.charCodeAt(i).toString(16).padStart(4, '0')}`;
  return escaped;
}

/** One value (a cell, a title, a reason): every control, format and ignorable character escaped, newlines too. */
export function printable(text: string): string {
  return text.replace(UNSAFE, escapeCharacter);
}

/**
 * One line of a view, as a tagged template: the CLI's own words as written, every interpolated
 * value through printable(). A renderer writes each line this way, so no value it puts in — a host's
 * reason, a health check's observation, a state the server names — can start a line of its own or
 * drive the terminal, whichever field it came from. (Escaping a value twice changes nothing, so a
 * part built the same way may be interpolated again.)
 */
export function oneLine(words: TemplateStringsArray, ...values: readonly unknown[]): string {
  return words.reduce((line, word, i) => line + (i === 0 ? '' : printable(String(values[i - 1]))) + word, '');
}

/**
 * A whole text about to be written (main.ts passes every line through it): its own newlines and tabs
 * kept, any other control, format or ignorable character escaped. `--json` output goes through it
 * unchanged except for DEL, C1, format, separator and ignorable characters, which become `\u…`
 * escapes: the same string to any JSON reader (JSON.stringify has already escaped the C0 ones inside
 * strings; raw newlines there are only whitespace between tokens, and it never writes the others
 * outside a string).
 */
export function terminalSafe(text: string): string {
  return text.replace(UNSAFE, (c) => (c === '\n' || c === '\t' ? c : escapeCharacter(c)));
}
