import { describe, expect, it } from 'vitest';
import { oneLine, printable, terminalSafe } from '../src/terminal-text.js';

describe('text from the server on a terminal', () => {
  const clearAndRetitle = 'title\x1b[2J\x1b[H\x1b]0;owned\x07\x9b31m\u202eevil';

  it('shows ESC, CSI, OSC, BEL, C1 and bidi overrides escaped in a value, newlines too', () => {
    expect(printable(`${clearAndRetitle}\nforged line`)).toBe(
      'title\\u001b[2J\\u001b[H\\u001b]0;owned\\u0007\\u009b31m\\u202eevil\\u000aforged line',
    );
  });

  it('keeps a rendered text its own newlines and tabs, and escapes every other control', () => {
    expect(terminalSafe(`a\tb\n${clearAndRetitle}\r`)).toBe(
      'a\tb\ntitle\\u001b[2J\\u001b[H\\u001b]0;owned\\u0007\\u009b31m\\u202eevil\\u000d',
    );
    // JSON stays JSON: the escapes it gains read back as the same string.
    const json = JSON.stringify({ title: clearAndRetitle }, null, 2);
    expect(JSON.parse(terminalSafe(json))).toEqual({ title: clearAndRetitle });
  });
});

describe('characters that draw nothing but change what is read', () => {
  // None of these is a control character (\p{Cc}): each is a format character (Cf) or a line or
  // paragraph separator (Zl, Zp), and each makes `role=w?eb` read as `role=web`, or breaks a line.
  const INVISIBLE: Record<string, string> = {
    'zero-width space': '\u200b',
    'zero-width non-joiner': '\u200c',
    'zero-width joiner': '\u200d',
    'word joiner': '\u2060',
    'byte order mark': '\ufeff',
    'Arabic letter mark': '\u061c',
    'left-to-right mark': '\u200e',
    'right-to-left isolate': '\u2067',
    'soft hyphen': '\u00ad',
    'line separator': '\u2028',
    'paragraph separator': '\u2029',
  };

  for (const [name, c] of Object.entries(INVISIBLE)) {
    const code = `\\u${(c.codePointAt(0) ?? 0).toString(16).padStart(4, '0')}`;
    it(`shows the ${name} escaped, in a value and in a whole text`, () => {
      expect(printable(`role=w${c}eb`)).toBe(`role=w${code}eb`);
      expect(terminalSafe(`labels\n  role=w${c}eb`)).toBe(`labels\n  role=w${code}eb`);
    });
  }

  it('escapes a format character beyond U+FFFF as its surrogate pair, so JSON reads the same string back', () => {
    // TAG LATIN CAPITAL LETTER A: invisible text ("ASCII smuggling").
    expect(printable('a\u{e0041}b')).toBe('a\\udb40\\udc41b');
    const value = { label: 'w\u200beb\u{e0041}\u2028\ufeff' };
    expect(JSON.parse(terminalSafe(JSON.stringify(value, null, 2)))).toEqual(value);
  });

  it('prints legitimate text as sent: accents, CJK, Hangul, right-to-left letters, emoji with skin tone, flags', () => {
    // 한 spelled in conjoining jamo (U+1112 U+1161 U+11AB): jamo are letters, only the fillers draw nothing.
    const text = 'café naïve e\u0301 Zürich 東京 서울 \u1112\u1161\u11ab مرحبا שלום ✓ ❤ 👍🏽 🇫🇷 — …';
    expect(printable(text)).toBe(text);
    expect(terminalSafe(text)).toBe(text);
  });

  it('shows an emoji joined by a zero-width joiner as its parts: the price of escaping every joiner', () => {
    expect(printable('\u{1f469}\u200d\u{1f4bb}')).toBe('\u{1f469}\\u200d\u{1f4bb}');
  });

  it("shows an emoji's variation selector escaped after its base: the price of escaping every selector", () => {
    expect(printable('\u2764\ufe0f')).toBe('\u2764\\ufe0f');
    // A rainbow flag: white flag, VS16, ZWJ, rainbow — its parts, both invisible ones escaped.
    expect(printable('\u{1f3f3}\ufe0f\u200d\u{1f308}')).toBe('\u{1f3f3}\\ufe0f\\u200d\u{1f308}');
  });
});

describe('default ignorable characters that are not format characters', () => {
  // Letters and marks (\p{Lo}, \p{Mn}) that Unicode has renderers draw as nothing: `role=w?eb` reads as
  // `role=web` all the same, or a value carries data no one sees ("variation selector smuggling").
  const IGNORABLE: Record<string, { c: string; escaped: string }> = {
    'Hangul choseong filler (U+115F)': { c: '\u115f', escaped: '\\u115f' },
    'Hangul jungseong filler (U+1160)': { c: '\u1160', escaped: '\\u1160' },
    'Hangul filler (U+3164)': { c: '\u3164', escaped: '\\u3164' },
    'halfwidth Hangul filler (U+FFA0)': { c: '\uffa0', escaped: '\\uffa0' },
    'variation selector 16 (U+FE0F)': { c: '\ufe0f', escaped: '\\ufe0f' },
    'variation selector 17 (U+E0100)': { c: '\u{e0100}', escaped: '\\udb40\\udd00' },
  };

  for (const [name, { c, escaped }] of Object.entries(IGNORABLE)) {
    it(`shows the ${name} escaped, in a value, in a line and in a whole text`, () => {
      expect(printable(`role=w${c}eb`)).toBe(`role=w${escaped}eb`);
      expect(oneLine`  web-1 ${`role=w${c}eb`}`).toBe(`  web-1 role=w${escaped}eb`);
      expect(terminalSafe(`labels\n  role=w${c}eb`)).toBe(`labels\n  role=w${escaped}eb`);
    });
  }

  it('reads back from --json output as the same string, with none of them left raw', () => {
    const raw = ['\u115f', '\u1160', '\u3164', '\uffa0', '\ufe0f', '\u{e0100}', '\u{e01ef}'];
    const value = { label: `w${raw.slice(0, 4).join('')}eb`, title: `x${raw.slice(4).join('')}` };
    const shown = terminalSafe(JSON.stringify(value, null, 2));
    expect(raw.filter((c) => shown.includes(c))).toEqual([]);
    expect(JSON.parse(shown)).toEqual(value);
  });
});

describe('oneLine', () => {
  it("escapes what is put into the line, never the line's own words", () => {
    const reason = 'disk full\nwave 9  passed\r\t\u200b';
    expect(oneLine`  web-1 failed: ${reason} (${3} tries, ${null})`).toBe(
      '  web-1 failed: disk full\\u000awave 9  passed\\u000d\\u0009\\u200b (3 tries, null)',
    );
  });

  it('changes nothing in a part already built with it', () => {
    const part = oneLine`restart of ${'a\nb'} FAILED`;
    expect(oneLine`  web-1 ${part}`).toBe('  web-1 restart of a\\u000ab FAILED');
  });
});
