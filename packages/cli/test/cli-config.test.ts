import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type ConfigFiles,
  configPath,
  loadConfig,
  readTokenFile,
  selectContext,
  useContext,
} from '../src/cli-config.js';
import { describeError } from '../src/cli-errors.js';
import { resolveConnection } from '../src/connection.js';

const dir = mkdtempSync(join(tmpdir(), 'fleetpatch-cli-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const files: ConfigFiles = {
  readFile: (path) => readFileSync(path, 'utf8'),
  writeFile: (path, text) => writeFileSync(path, text),
  mode: (path) => statSync(path).mode & 0o777,
  exists: existsSync,
};

function write(name: string, text: string, mode = 0o600): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  chmodSync(path, mode);
  return path;
}

describe('the CLI config file and its contexts', () => {
  it('is found through FLEETPATCH_CONFIG, else under XDG_CONFIG_HOME or ~/.config', () => {
    expect(configPath({ FLEETPATCH_CONFIG: '/x/c.yaml' }, '/home/a')).toBe('/x/c.yaml');
    expect(configPath({ XDG_CONFIG_HOME: '/xdg' }, '/home/a')).toBe('/xdg/fleetpatch/config.yaml');
    expect(configPath({}, '/home/a')).toBe('/home/a/.config/fleetpatch/config.yaml');
  });

  it('resolves relative paths from the file, and lets flags and the environment win over the context', () => {
    write('lab.token', 'tok-from-file\n');
    const path = write(
      'config.yaml',
      'currentContext: lab\ncontexts:\n  lab:\n    url: http://127.0.0.1:7420\n    tokenFile: lab.token\n    signKey: keys/alice.pem\n',
    );
    const lab = selectContext(loadConfig(path, files), path, undefined);
    expect(lab).toEqual({
      name: 'lab',
      url: 'http://127.0.0.1:7420',
      tokenFile: join(dir, 'lab.token'),
      signKey: join(dir, 'keys/alice.pem'),
    });
    const context = { ...lab, name: 'lab', token: () => readTokenFile(join(dir, 'lab.token'), files) };
    const noFile = () => '';
    expect(resolveConnection({ flags: {}, env: {}, context, readFile: noFile })).toEqual({
      url: 'http://127.0.0.1:7420',
      token: 'tok-from-file',
    });
    expect(
      resolveConnection({
        flags: { url: 'http://localhost:1' },
        env: { FLEETPATCH_TOKEN: 'env-tok' },
        context,
        readFile: noFile,
      }),
    ).toEqual({
      url: 'http://localhost:1',
      token: 'env-tok',
    });
  });

  it('refuses a bad config as bad input, naming file, line and field', () => {
    const path = write('bad.yaml', 'contexts:\n  lab:\n    url: http://127.0.0.1:7420\n    tokne: lab.token\n');
    let lines: string[] = [];
    try {
      loadConfig(path, files);
    } catch (err) {
      const described = describeError(err);
      expect(described.exitCode).toBe(2);
      lines = described.lines;
    }
    expect(lines[0]).toBe(`error: ${path} is not a valid fleetpatch config`);
    expect(lines[1]).toMatch(
      new RegExp(`^  ${path.replace(/\./g, '\\.')}:3:5: contexts\\.lab: Unrecognized key: "tokne"`),
    );
  });

  it('refuses a token file group or others can read, and an empty one', () => {
    expect(() => readTokenFile(write('open.token', 'tok', 0o640), files)).toThrow(
      /is readable by others \(mode 0640\): chmod 600/,
    );
    expect(() => readTokenFile(write('empty.token', '\n'), files)).toThrow(/is empty/);
    expect(() => readTokenFile(join(dir, 'missing.token'), files)).toThrow(/cannot read token file .*ENOENT/);
  });

  it('switches context keeping comments, keeps a JSON config JSON, and refuses an unknown name', () => {
    const yaml = write(
      'switch.yaml',
      '# mine\ncurrentContext: a\ncontexts:\n  a: {url: "http://127.0.0.1:1"}\n  b: {url: "http://127.0.0.1:2"}\n',
    );
    useContext(yaml, 'b', files);
    expect(readFileSync(yaml, 'utf8')).toMatch(/^# mine\ncurrentContext: b\n/);
    const json = write('switch.json', JSON.stringify({ contexts: { a: {}, b: {} } }));
    useContext(json, 'a', files);
    expect(JSON.parse(readFileSync(json, 'utf8'))).toEqual({ contexts: { a: {}, b: {} }, currentContext: 'a' });
    expect(() => useContext(yaml, 'prod', files)).toThrow('no context "prod" in');
    expect(loadConfig(yaml, files).currentContext).toBe('b');
  });
});
