/**
 * Whether the JSON text `text` opens more than `max` arrays or objects inside one another, found
 * without parsing it. Why: `JSON.parse` of text nested millions deep takes about ten times as long as
 * flat text of the same size (~0.4 s for 4 MiB here), and the WebSocket frames of both programs are
 * parsed whole before anything can be judged, on the coordinator before the peer has proved who it
 * is. This reads each character outside strings once, and skips strings with `indexOf`, so a file's
 * megabyte of content costs next to nothing. Text that is not JSON is not judged here: `JSON.parse`
 * refuses it next.
 */
export function jsonNestsDeeperThan(text: string, max: number): boolean {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === QUOTE) {
      const end = closingQuote(text, i);
      if (end === -1) return false;
      i = end;
    } else if (code === OPEN_ARRAY || code === OPEN_OBJECT) {
      depth++;
      if (depth > max) return true;
    } else if (code === CLOSE_ARRAY || code === CLOSE_OBJECT) {
      depth--;
    }
  }
  return false;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;

/**
 * Where the string opened at `start` ends: the next quote not escaped, one after an even run of
 * backslashes. Each backslash run is counted for the one quote that follows it, so the whole text
 * costs one pass however it is made. -1 when the string never ends.
 */
function closingQuote(text: string, start: number): number {
  for (let at = text.indexOf('"', start + 1); at !== -1; at = text.indexOf('"', at + 1)) {
    let backslashes = 0;
    while (text.charCodeAt(at - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return at;
  }
  return -1;
}
