import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// A drain (a coordinator leaving its group) while a write of the outbox is under way waits for that
// write, whose I/O must get its turn: before, it spun on the microtask queue and the process hung at
// 100 % of a core. Each case runs in a child process with a deadline (the built AgentOutbox, a fake
// database): a spin cannot be interrupted from inside the process that spins.

const OUTBOX = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'group', 'agent-outbox.js')).href;

/** Runs `body` after a fake database (`answer`: what each query does, after 20 ms) and an outbox are set up. */
async function inChild(answer: 'ok' | 'fail', body: string): Promise<string> {
  const script = `
    import { AgentOutbox } from ${JSON.stringify(OUTBOX)};
    const written = [];
    const db = {
      query: (_sql, params) => new Promise((resolve, reject) => setTimeout(() => {
        if (${JSON.stringify(answer)} === 'fail') reject(new Error('connection refused'));
        else { written.push(params[0]); resolve([]); }
      }, 20)),
    };
    const outbox = new AgentOutbox(db, { warn() {} });
    const cancel = (orderId) => ({ type: 'order.cancel', orderId });
    ${body}
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
    timeout: 10_000,
  });
  return stdout.trim();
}

describe('AgentOutbox.drain', () => {
  it('waits for the write under way, then writes what came after it', async () => {
    const out = await inChild(
      'ok',
      `outbox.enqueue('h1', cancel('o1'));
       await new Promise((resolve) => setImmediate(resolve)); // the first write is under way
       outbox.enqueue('h2', cancel('o2'));
       await outbox.drain();
       console.log(JSON.stringify(written));`,
    );
    expect(out).toBe(JSON.stringify([['h1'], ['h2']]));
  });

  it('rejects once a write fails, keeping the messages, instead of trying again and again', async () => {
    const out = await inChild(
      'fail',
      `outbox.enqueue('h1', cancel('o1'));
       await new Promise((resolve) => setImmediate(resolve));
       const result = await outbox.drain().then(() => 'drained', (err) => err.message);
       outbox.stop();
       console.log(result);`,
    );
    expect(out).toBe('writing the agent outbox failed');
  });
});
