/**
 * A new agent key never hangs its process. On Node 20 a key made by `generateKeyPairSync` and then
 * exported as a JWK can deadlock the main thread: the export holds the key's lock while it makes
 * strings, and a garbage collection in between finalizes the key-generation job, whose destructor
 * waits for the same lock. A bench agent process stopped so in a first start.
 *
 * `--gc-interval=N` collects every N allocations: which N opens the window depends on what else the
 * loop allocates, so each run sweeps many of them, one process each. Made the way agents made keys
 * before (generateKeyPairSync, then the JWK exports), a quarter or so of these runs hang; the control
 * below keeps showing that this Node still does.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const AGENT_PROOF = fileURLToPath(new URL('../dist/agent-proof.js', import.meta.url));
/** The collection intervals swept. */
const INTERVALS = Array.from({ length: 40 }, (_, i) => i + 5);

interface Run {
  interval: number;
  hung: boolean;
  stdout: string;
}

/** Runs `body` (an ES module) under `--gc-interval=interval`; `hung` if it is not done within `deadlineMs`. */
function underGcPressure(body: string, interval: number, deadlineMs: number): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [`--gc-interval=${interval}`, '--input-type=module', '-e', body], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    child.on('error', reject);
    child.on('exit', (_code, signal) => {
      clearTimeout(timer);
      resolve({ interval, hung: signal === 'SIGKILL', stdout });
    });
  });
}

/** `body` under every interval, a few processes at a time. */
async function sweep(body: string, deadlineMs: number, stopAtFirstHang = false): Promise<Run[]> {
  const runs: Run[] = [];
  const pending = [...INTERVALS];
  const worker = async () => {
    for (let interval = pending.shift(); interval !== undefined; interval = pending.shift()) {
      const run = await underGcPressure(body, interval, deadlineMs);
      runs.push(run);
      if (run.hung && stopAtFirstHang) pending.length = 0;
    }
  };
  await Promise.all([worker(), worker(), worker()]);
  return runs.sort((a, b) => a.interval - b.interval);
}

describe('making an agent key under garbage-collection pressure', () => {
  it('makes 1,500 keys at each of 40 collection intervals, each signing what its public key verifies', async () => {
    const runs = await sweep(
      `import { generateLoadedAgentKeyPair, signPayload, verifyPayload } from ${JSON.stringify(AGENT_PROOF)};
       const payload = Buffer.from('enroll');
       let made = 0;
       for (let i = 0; i < 1500; i++) {
         const pair = generateLoadedAgentKeyPair();
         if (i % 100 === 0 && !verifyPayload(pair.publicKey, payload, signPayload(pair.privateKey, payload))) break;
         made++;
       }
       console.log(made);`,
      30_000,
    );
    expect(runs.filter((run) => run.hung).map((run) => run.interval)).toEqual([]);
    expect(new Set(runs.map((run) => run.stdout))).toEqual(new Set(['1500\n']));
  }, 120_000);

  it('control: this Node hangs on generateKeyPairSync and a JWK export under the same sweep', async () => {
    const runs = await sweep(
      `import { generateKeyPairSync } from 'node:crypto';
       for (let i = 0; i < 5000; i++) {
         const { publicKey, privateKey } = generateKeyPairSync('ed25519');
         publicKey.export({ format: 'jwk' });
         privateKey.export({ format: 'jwk' });
       }`,
      3_000,
      true,
    );
    expect(runs.some((run) => run.hung)).toBe(true);
  }, 120_000);
});
