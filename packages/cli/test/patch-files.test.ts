import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeError, LocalValidationError } from '../src/cli-errors.js';
import { readInputDocument } from '../src/json-input.js';
import { validatePatchSpec } from '../src/local-validation.js';

let dir: string;
const noStdin = () => Promise.reject(new Error('no stdin here'));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fleetpatch-patch-files-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function file(name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

const YAML_PATCH = `# workers for the peak
title: More workers
problem: Requests queue at peak.
rootCause: Too few workers.
intendedFix: workers = 8
ticket: OPS-1
change:
  kind: file
  path: /etc/app.conf
  content: |
    workers = 8
  mode: "0644"
  owner: root
  group: root
`;

/** Reads, validates, and returns the lines a person would see on stderr. */
async function refusedLines(path: string): Promise<string[]> {
  try {
    const doc = await readInputDocument(path, noStdin);
    validatePatchSpec(doc.value, doc.source, doc.locate);
  } catch (err) {
    if (!(err instanceof LocalValidationError)) throw err;
    const { lines, exitCode } = describeError(err);
    expect(exitCode).toBe(2);
    return lines;
  }
  throw new Error(`${path} was accepted`);
}

describe('patch files in YAML or JSON', () => {
  it('reads a YAML patch as the same value as its JSON twin', async () => {
    const yaml = await readInputDocument(await file('patch.yaml', YAML_PATCH), noStdin);
    const json = await readInputDocument(await file('patch.json', JSON.stringify(yaml.value, null, '\t')), noStdin);
    expect(yaml.value).toEqual(json.value);
    expect(validatePatchSpec(yaml.value, yaml.source)).toMatchObject({ change: { content: 'workers = 8\n' } });
  });

  it('points a bad field at its file, line and column, and a missing one at where it belongs', async () => {
    const path = await file(
      'bad.yaml',
      YAML_PATCH.replace('mode: "0644"', 'mode: "999"').replace('ticket: OPS-1\n', ''),
    );
    const lines = await refusedLines(path);
    expect(lines[0]).toBe(`error: ${path} is not a valid patch; nothing was sent`);
    expect(lines).toContain(`  ${path}:11:9: change.mode: must be an octal mode such as "0644"`);
    // No `ticket` line: the error points at the mapping that lacks it (line 1 is a comment).
    expect(lines.some((l) => l.startsWith(`  ${path}:2:1: ticket: `))).toBe(true);
  });

  it('places fields of a JSON file too', async () => {
    const path = await file('bad.json', JSON.stringify({ ...JSON.parse('{}'), title: '', ticket: 'T' }, null, 2));
    const lines = await refusedLines(path);
    expect(lines).toContain(`  ${path}:2:12: title: Too small: expected string to have >=1 characters`);
  });

  it('names file, line and column of a YAML syntax error, and sends nothing', async () => {
    const path = await file('broken.yaml', 'title: x\nchange: [kind: file\nticket: y\n');
    await expect(readInputDocument(path, noStdin)).rejects.toThrow(
      new RegExp(`^${path.replace(/[.]/g, '\\.')}:\\d+:\\d+: not valid YAML or JSON: `),
    );
  });

  it('refuses a key given twice instead of keeping one silently', async () => {
    const path = await file('twice.yaml', 'title: one\ntitle: two\n');
    await expect(readInputDocument(path, noStdin)).rejects.toThrow(/not valid YAML or JSON: Map keys must be unique/);
  });
});
