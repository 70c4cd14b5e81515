/**
 * The directories the agent makes for durable files are durable themselves. A new directory is an
 * entry in its parent: until the parent is fsync'd, a power cut can take the directory — and every
 * file carefully renamed and synced into it, a whole order's journal with it. The journal (a new
 * data dir, a new order's directory) and the credential run here under strace, the real built code
 * in a real process, and the calls are held against the rules of support/durability-rules.ts.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { sampleApplyOrder } from '../packages/agent/test/support/sample-orders.js';
import { checkAgentTrace, formatViolations } from './support/durability-rules.js';
import { readTrace, straceSupport, straceWrap } from './support/strace-tracer.js';

const strace = straceSupport();
if (!strace.available) console.warn(`journal directories at the system calls: skipped — ${strace.reason}`);

const AGENT_DIST = join(import.meta.dirname, '..', 'packages', 'agent', 'dist');

/** Opens a journal in a data dir that does not exist yet, journals one order twice, stores a credential. */
const SCRIPT = `
const { Journal } = await import(${JSON.stringify(join(AGENT_DIST, 'journal.js'))});
const { writeCredential } = await import(${JSON.stringify(join(AGENT_DIST, 'agent-credential.js'))});
const [dataDir, order] = [process.argv[1], JSON.parse(process.argv[2])];
const journal = await Journal.open(dataDir);
const entry = await journal.createApply(order, new Date().toISOString());
await journal.update(entry, { phase: 'snapshotted' }, new Date().toISOString());
await writeCredential(dataDir, { hostId: 'web-1', publicKey: 'k', privateKeyPem: 'p' }, new Date().toISOString());
`;

describe.skipIf(!strace.available)(
  `journal directories at the system calls${strace.available ? '' : ` (skipped: ${strace.reason})`}`,
  () => {
    let work: string | undefined;

    afterEach(async () => {
      if (work) await rm(work, { recursive: true, force: true });
    });

    it('a new data dir and a new order directory are fsync’d into their parents before anything is put in them', async () => {
      work = await mkdtemp(join(tmpdir(), 'fleetpatch-journal-dirs-'));
      const dataDir = join(work, 'data', 'agent');
      const log = join(work, 'journal.strace');
      const [command, ...args] = [
        ...straceWrap(log, { reads: false }),
        process.execPath,
        '--input-type=module',
        '-e',
        SCRIPT,
        dataDir,
        JSON.stringify(sampleApplyOrder('o1')),
      ];
      const child = spawn(command as string, args, { stdio: ['ignore', 'inherit', 'inherit'] });
      const [code] = await once(child, 'exit');
      expect(code).toBe(0);

      const report = checkAgentTrace(await readTrace(log, child.pid as number), { dataDir, rootDir: '/nonexistent' });
      expect(formatViolations(report.violations)).toBe('');
      // The order's first entry renamed into place, its second appended to it.
      expect(report.checked.placements).toMatchObject({ 'journal entry': 1, credential: 1 });
      expect(report.checked.appends).toBe(1);
    });
  },
);
