import { describe, expect, it } from 'vitest';
import { cutText } from '../src/cut-text.js';

describe('cutText', () => {
  it('leaves text within the limit as it is', () => {
    expect(cutText('abc', 3)).toBe('abc');
    expect(cutText('', 1)).toBe('');
  });

  it('cuts longer text to the limit, an ellipsis last', () => {
    expect(cutText('abcdef', 4)).toBe('abc…');
    expect(cutText('abcdef', 4)).toHaveLength(4);
  });

  it('never leaves half a surrogate pair', () => {
    // 'a' then an emoji (two UTF-16 units): a cut after 'a' + the high half would leave it alone.
    const cut = cutText('ab😀cd', 4);
    expect(cut).toBe('ab…');
    expect(/[\ud800-\udbff](?![\udc00-\udfff])/.test(cut)).toBe(false);
    expect(cutText('ab😀cd', 5)).toBe('ab😀…');
  });
});
