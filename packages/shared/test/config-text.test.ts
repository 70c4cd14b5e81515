import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../src/config-text.js';

describe('parseConfigText', () => {
  it('reads YAML by a .yaml or .yml name, JSON otherwise', () => {
    expect(parseConfigText('port: 7420\napiTokens:\n  - name: a\n', 'c.yaml')).toEqual({
      port: 7420,
      apiTokens: [{ name: 'a' }],
    });
    expect(parseConfigText('port: 1\n', 'c.YML')).toEqual({ port: 1 });
    expect(parseConfigText('{"port": 2}', 'c.json')).toEqual({ port: 2 });
    expect(parseConfigText('', 'empty.yaml')).toEqual({});
  });

  it('refuses a key given twice in YAML, naming the file and the line', () => {
    expect(() => parseConfigText('port: 1\nhost: a\nport: 2\n', '/etc/fleetpatch/c.yaml')).toThrow(
      /^\/etc\/fleetpatch\/c\.yaml: Map keys must be unique at line 3, column 1$/,
    );
  });

  it('a syntax error says where, never quoting the text (it may hold a token)', () => {
    const yaml = (() => {
      try {
        parseConfigText('apiTokens: [ { token: s3cret-token-0001\n', 'c.yaml');
      } catch (err) {
        return (err as Error).message;
      }
    })();
    expect(yaml).toMatch(/^c\.yaml: .* at line \d+, column \d+$/);
    expect(yaml).not.toContain('s3cret');
    expect(() => parseConfigText('{"token": "s3cret-token-0001" x}', 'c.json')).toThrow(
      /^c\.json: not valid JSON: .* at line 1, column \d+$/,
    );
    expect(() => parseConfigText('{"token": "s3cret"', 'c.json')).toThrow(/^c\.json: not valid JSON/);
  });
});
