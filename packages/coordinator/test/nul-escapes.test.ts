/**
 * `withoutNulEscapes`: a NUL character can reach the coordinator in an agent's JSON only as the
 * `\u0000` escape; each becomes U+FFFD, keys and values alike, and an escaped backslash followed by
 * `u0000` (no NUL at all) is left as it is.
 */
import { describe, expect, it } from 'vitest';
import { withoutNulEscapes } from '../src/hub/nul-escapes.js';

const parsed = (value: unknown) => JSON.parse(withoutNulEscapes(JSON.stringify(value)));

describe('withoutNulEscapes', () => {
  it('turns every NUL of the parsed value into U+FFFD, in keys and values', () => {
    expect(parsed({ version: 'x\u0000y', [`k\u0000`]: ['\u0000\u0000', 'a\u0000'] })).toEqual({
      version: 'x\uFFFDy',
      'k\uFFFD': ['\uFFFD\uFFFD', 'a\uFFFD'],
    });
  });

  it('leaves text without a NUL untouched, escaped backslashes before u0000 included', () => {
    for (const value of ['plain', 'a\\u0000 written out', '\\\\u0000', 'u0000', '\\', { '\\u0000': '\\\\' }]) {
      const text = JSON.stringify(value);
      expect(withoutNulEscapes(text)).toBe(text);
      expect(parsed(value)).toEqual(value);
    }
  });

  it('tells an escaped backslash from the escape after it', () => {
    // A backslash, then a NUL: `\\` then `\u0000` in the text.
    expect(parsed('\\\u0000')).toBe('\\\uFFFD');
    expect(parsed('\\\\\u0000')).toBe('\\\\\uFFFD');
    expect(parsed('\\u0000\u0000')).toBe('\\u0000\uFFFD');
  });
});
