import { describe, expect, it } from 'vitest';
import { CanonicalJsonError, canonicalJson } from '../src/canonical-json.js';

const utf8Hex = (text: string) => Buffer.from(text, 'utf8').toString('hex');
const hex = (spaced: string) => spaced.replace(/\s+/g, '');

/**
 * Input/output pairs from the RFC 8785 author's reference test data,
 * https://github.com/cyberphone/json-canonicalization, `testdata/input/*.json` →
 * `testdata/outhex/*.txt` (commit 19d51d7). The input is JSON text, parsed first; the expected output
 * is the UTF-8 bytes in hex, as published, so nothing is lost to an editor's idea of "\u0080".
 */
const publishedVectors: { name: string; input: string; outhex: string }[] = [
  {
    name: 'arrays.json',
    input: '[ 56, { "d": true, "10": null, "1": [ ] } ]',
    outhex: '5b 35 36 2c 7b 22 31 22 3a 5b 5d 2c 22 31 30 22 3a 6e 75 6c 6c 2c 22 64 22 3a 74 72 75 65 7d 5d',
  },
  {
    name: 'structures.json',
    input: String.raw`{
      "1": {"f": {"f": "hi","F": 5} ,"\n": 56.0},
      "10": { },
      "": "empty",
      "a": { },
      "111": [ {"e": "yes","E": "no" } ],
      "A": { }
    }`,
    outhex: `7b 22 22 3a 22 65 6d 70 74 79 22 2c 22 31 22 3a 7b 22 5c 6e 22 3a 35 36 2c 22 66 22 3a 7b 22 46
      22 3a 35 2c 22 66 22 3a 22 68 69 22 7d 7d 2c 22 31 30 22 3a 7b 7d 2c 22 31 31 31 22 3a 5b 7b 22
      45 22 3a 22 6e 6f 22 2c 22 65 22 3a 22 79 65 73 22 7d 5d 2c 22 41 22 3a 7b 7d 2c 22 61 22 3a 7b
      7d 7d`,
  },
  {
    name: 'values.json',
    input: String.raw`{
      "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }`,
    outhex: `7b 22 6c 69 74 65 72 61 6c 73 22 3a 5b 6e 75 6c 6c 2c 74 72 75 65 2c 66 61 6c 73 65 5d 2c 22 6e
      75 6d 62 65 72 73 22 3a 5b 33 33 33 33 33 33 33 33 33 2e 33 33 33 33 33 33 33 2c 31 65 2b 33 30
      2c 34 2e 35 2c 30 2e 30 30 32 2c 31 65 2d 32 37 5d 2c 22 73 74 72 69 6e 67 22 3a 22 e2 82 ac 24
      5c 75 30 30 30 66 5c 6e 41 27 42 5c 22 5c 5c 5c 5c 5c 22 2f 22 7d`,
  },
  {
    name: 'french.json',
    input: `{
      "peach": "This sorting order",
      "péché": "is wrong according to French",
      "pêche": "but canonicalization MUST",
      "sin":   "ignore locale"
    }`,
    outhex: `7b 22 70 65 61 63 68 22 3a 22 54 68 69 73 20 73 6f 72 74 69 6e 67 20 6f 72 64 65 72 22 2c 22 70
      c3 a9 63 68 c3 a9 22 3a 22 69 73 20 77 72 6f 6e 67 20 61 63 63 6f 72 64 69 6e 67 20 74 6f 20 46
      72 65 6e 63 68 22 2c 22 70 c3 aa 63 68 65 22 3a 22 62 75 74 20 63 61 6e 6f 6e 69 63 61 6c 69 7a
      61 74 69 6f 6e 20 4d 55 53 54 22 2c 22 73 69 6e 22 3a 22 69 67 6e 6f 72 65 20 6c 6f 63 61 6c 65
      22 7d`,
  },
  {
    name: 'weird.json',
    input: String.raw`{
      "\u20ac": "Euro Sign",
      "\r": "Carriage Return",
      "\u000a": "Newline",
      "1": "One",
      "\u0080": "Control\u007f",
      "\ud83d\ude02": "Smiley",
      "\u00f6": "Latin Small Letter O With Diaeresis",
      "\ufb33": "Hebrew Letter Dalet With Dagesh",
      "</script>": "Browser Challenge"
    }`,
    outhex: `7b 22 5c 6e 22 3a 22 4e 65 77 6c 69 6e 65 22 2c 22 5c 72 22 3a 22 43 61 72 72 69 61 67 65 20 52
      65 74 75 72 6e 22 2c 22 31 22 3a 22 4f 6e 65 22 2c 22 3c 2f 73 63 72 69 70 74 3e 22 3a 22 42 72
      6f 77 73 65 72 20 43 68 61 6c 6c 65 6e 67 65 22 2c 22 c2 80 22 3a 22 43 6f 6e 74 72 6f 6c 7f 22
      2c 22 c3 b6 22 3a 22 4c 61 74 69 6e 20 53 6d 61 6c 6c 20 4c 65 74 74 65 72 20 4f 20 57 69 74 68
      20 44 69 61 65 72 65 73 69 73 22 2c 22 e2 82 ac 22 3a 22 45 75 72 6f 20 53 69 67 6e 22 2c 22 f0
      9f 98 82 22 3a 22 53 6d 69 6c 65 79 22 2c 22 ef ac b3 22 3a 22 48 65 62 72 65 77 20 4c 65 74 74
      65 72 20 44 61 6c 65 74 20 57 69 74 68 20 44 61 67 65 73 68 22 7d`,
  },
];

/**
 * IEEE-754 doubles (as hex bits) and their serialization, from the same repository's
 * `testdata/README.md` ("Sample lines" of the ES6 number test file).
 */
const publishedNumbers: [bits: string, expected: string][] = [
  ['4340000000000001', '9007199254740994'],
  ['4340000000000002', '9007199254740996'],
  ['444b1ae4d6e2ef50', '1e+21'],
  ['3eb0c6f7a0b5ed8d', '0.000001'],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
  ['8000000000000000', '0'],
  ['0000000000000000', '0'],
];

function doubleFromBits(bits: string): number {
  return Buffer.from(bits, 'hex').readDoubleBE(0);
}

describe('canonical JSON (RFC 8785)', () => {
  it.each(publishedVectors)('matches the published vector $name byte for byte', ({ input, outhex }) => {
    expect(utf8Hex(canonicalJson(JSON.parse(input)))).toBe(hex(outhex));
  });

  it.each(publishedNumbers)('serializes the double %s as %s', (bits, expected) => {
    expect(canonicalJson(doubleFromBits(bits))).toBe(expected);
  });

  it('writes numbers in ECMAScript shortest form', () => {
    expect(canonicalJson([1e21, 1e20, 1e-7, 1e-6, 0.1, 0.1 + 0.2, -0, 5e-324, 100, -1.5, 2 ** 53])).toBe(
      '[1e+21,100000000000000000000,1e-7,0.000001,0.1,0.30000000000000004,0,5e-324,100,-1.5,9007199254740992]',
    );
  });

  it('sorts member names by UTF-16 code units, not by code point, locale or case', () => {
    // U+FB33 is a higher code point than U+1F600, but U+1F600's first code unit (0xD83D) is lower.
    const value = { '\uFB33': 1, '\u{1F600}': 2, é: 3, e: 4, E: 5, '': 6, a1: 7, a: 8 };
    expect(canonicalJson(value)).toBe('{"":6,"E":5,"a":8,"a1":7,"e":4,"é":3,"\u{1F600}":2,"\uFB33":1}');
  });

  it('sorts nested objects and keeps arrays in order', () => {
    const value = { z: [{ b: 1, a: [3, 2, 1] }, 'x'], a: { d: { f: null, e: true }, c: false } };
    expect(canonicalJson(value)).toBe('{"a":{"c":false,"d":{"e":true,"f":null}},"z":[{"a":[3,2,1],"b":1},"x"]}');
  });

  it('escapes strings as JSON.stringify does: controls in lower-case hex, the rest as is', () => {
    expect(canonicalJson('a"b\\c\b\f\n\r\t\u0000\u001f\u007f\u2028/€😀')).toBe(
      '"a\\"b\\\\c\\b\\f\\n\\r\\t\\u0000\\u001f\u007f\u2028/€😀"',
    );
  });

  it('does not depend on the order members were written in', () => {
    expect(canonicalJson({ b: 2, a: { y: 1, x: 2 } })).toBe(canonicalJson({ a: { x: 2, y: 1 }, b: 2 }));
  });

  it.each([
    ['NaN', Number.NaN, '$'],
    ['Infinity', [1, Number.POSITIVE_INFINITY], '$[1]'],
    ['-Infinity', { n: Number.NEGATIVE_INFINITY }, '$.n'],
    ['undefined', undefined, '$'],
    ['an undefined member', { a: 1, b: undefined }, '$.b'],
    ['an array hole', new Array<number>(3), '$[0]'],
    ['a function', { f: () => 1 }, '$.f'],
    ['a bigint', { n: 1n }, '$.n'],
    ['a symbol', Symbol('s'), '$'],
    ['a Date', { at: new Date(0) }, '$.at'],
    ['a Map', new Map([['a', 1]]), '$'],
    ['a class instance', new (class Point {})(), '$'],
    ['a lone high surrogate', { s: 'a\uD800b' }, '$.s'],
    ['a lone low surrogate', ['\uDC00'], '$[0]'],
    ['a lone surrogate in a member name', { '\uD800': 1 }, '$'],
    ['a symbol key', { [Symbol('k')]: 1 }, '$'],
  ])('refuses %s', (_, value, path) => {
    let thrown: unknown;
    try {
      canonicalJson(value);
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(CanonicalJsonError);
    expect((thrown as CanonicalJsonError).path).toBe(path);
  });

  it('refuses a cycle and a value nested too deep instead of overflowing the stack', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    expect(() => canonicalJson(cycle)).toThrow(CanonicalJsonError);
    let deep: unknown = 1;
    for (let i = 0; i < 65; i++) deep = [deep];
    expect(() => canonicalJson(deep)).toThrow(/nested deeper than 64/);
  });

  it('accepts objects without a prototype', () => {
    const bare = Object.assign(Object.create(null) as object, { b: 1, a: 2 });
    expect(canonicalJson(bare)).toBe('{"a":2,"b":1}');
  });
});
