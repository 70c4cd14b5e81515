import { describe, expect, it } from 'vitest';
import type { ApiClient } from '../src/api-client.js';
import type { CliContext } from '../src/cli-context.js';
import { ApiError, ConnectionError, ExitCode } from '../src/cli-errors.js';
import { watchStatus } from '../src/watch-command.js';
import { host, NOW, status, summary } from './status-fixture.js';

// `status --watch` as a command, against an API that answers a scripted series of statuses: which
// view it picks (live region, lines, JSON) and what it exits with. The event stream is refused here
// (as by a proxy that drops SSE), so the watch polls: the fallback the real one also has.

const running = status({}, { waves: [{ wave: 0, phase: 'running', hosts: [host('web-1', 'applying')] }] });
const halted = status(
  { state: 'halted', stateReason: 'failure budget exceeded' },
  {
    waves: [
      {
        wave: 0,
        phase: 'stopped',
        hosts: [host('web-1', 'failed', { errorCode: 'health_failed', reason: 'HTTP 500' })],
      },
    ],
  },
);

function harness(answers: (() => unknown)[], interactive: boolean) {
  const out: string[] = [];
  const err: string[] = [];
  const frames: string[] = [];
  let done = false;
  let call = 0;
  const api = {
    rolloutStatus: async () => {
      const answer = answers[Math.min(call++, answers.length - 1)];
      return answer?.();
    },
    // The same script: a summary in it is the answer to this read; a status (a small rollout) is
    // left for the status read that follows, and this read gets its rollout.
    rolloutSummary: async () => {
      const index = Math.min(call, answers.length - 1);
      let answer: unknown;
      try {
        answer = answers[index]?.();
      } catch (err) {
        call++;
        throw err;
      }
      const read = answer as { rollout: unknown; failedHosts?: unknown };
      if (read.failedHosts !== undefined) {
        call++;
        return answer;
      }
      return { rollout: read.rollout };
    },
    getPatch: async () => ({ title: 'Raise workers', ticket: 'OPS-7' }),
    openEventStream: async () => {
      throw new ApiError(404, 'not_found', 'no stream here', []);
    },
  } as unknown as ApiClient;
  const ctx: CliContext = {
    output: {
      out: (t) => out.push(t),
      err: (t) => err.push(t),
      interactive,
      live: async () => ({
        update: (frame) => void frames.push(frame),
        done: () => {
          done = true;
        },
      }),
    },
    api: () => api,
    readStdin: async () => '',
    now: () => NOW,
    setExitCode: () => {},
  };
  return { ctx, out, err, frames, isDone: () => done };
}

describe('rollout status --watch', () => {
  it('redraws a live region on a terminal, leaves the last frame, and exits 7 when halted', async () => {
    const h = harness([() => running, () => halted], true);
    expect(await watchStatus(h.ctx, 'ro_1', { watch: true, reconnectFor: 120 })).toBe(ExitCode.halted);
    expect(h.out).toEqual([]); // nothing appended: every frame went to the live region
    expect(h.frames[0]).toContain('rollout ro_1  running  "Raise workers" (OPS-7)');
    expect(h.frames.at(-1)).toContain('failed  web-1 (wave 1) health_failed: HTTP 500');
    expect(h.isDone()).toBe(true);
  });

  it('prints timestamped lines off a terminal', async () => {
    const h = harness([() => running, () => halted], false);
    expect(await watchStatus(h.ctx, 'ro_1', { watch: true, reconnectFor: 120 })).toBe(ExitCode.halted);
    expect(h.frames).toEqual([]);
    expect(h.out[0]).toBe(
      `${NOW.toISOString()} rollout ro_1 running: "Raise workers" (OPS-7), 1 waves, 1 hosts, failures 0 of 0 tolerated`,
    );
    expect(h.out).toContain(`${NOW.toISOString()} wave 1 web-1 applying → failed: health_failed: HTTP 500`);
    expect(h.out.at(-1)).toBe(`${NOW.toISOString()} finished halted (exit 7)`);
  });

  it('follows a large rollout through its summaries off a terminal, and records where it ended from the last', async () => {
    const waves = (done: number, failed: number) => [
      { wave: 0, phase: 'passed' as const, hostCount: 1, counts: { healthy: 1 } },
      {
        wave: 1,
        phase: failed > 0 ? ('stopped' as const) : ('running' as const),
        hostCount: 4999,
        counts: { healthy: done, ...(failed > 0 ? { failed } : {}), queued: 4999 - done - failed },
      },
    ];
    const failedHost = {
      hostId: 'web-9',
      wave: 1,
      state: 'failed' as const,
      errorCode: 'health_failed',
      reason: 'HTTP 500',
    };
    const h = harness(
      [
        () => summary({ hostCount: 5000, waveCount: 2 }, { waves: waves(50, 0) }),
        () => summary({ hostCount: 5000, waveCount: 2 }, { waves: waves(100, 0) }),
        () =>
          summary(
            { hostCount: 5000, waveCount: 2, state: 'halted', stateReason: 'failure budget exceeded' },
            { waves: waves(120, 1), failures: 1, toleratedFailures: 0, failedHosts: [failedHost] },
          ),
      ],
      false,
    );
    expect(await watchStatus(h.ctx, 'ro_1', { watch: true, reconnectFor: 120 })).toBe(ExitCode.halted);
    const lines = h.out.map((line) => line.slice(NOW.toISOString().length + 1));
    expect(lines).toContain('wave 2: 100 done, 4899 pending');
    expect(lines).toContain('wave 2 running → stopped');
    expect(lines).toContain('wave 2: 120 done, 1 failed, 4878 pending');
    expect(lines).toContain('wave 2 web-9 failed: health_failed: HTTP 500');
    expect(lines).toContain('rollout running → halted (failure budget exceeded)');
    // The record at the end: each wave's counts and the failed hosts, not 5,000 hosts.
    expect(lines).toContainEqual(
      expect.stringMatching(/^wave 2 {2}\S{30} {2}120 done, 1 failed, 4878 pending {2}stopped$/),
    );
    expect(lines).toContain('failed  web-9 (wave 2) health_failed: HTTP 500');
    expect(lines.at(-1)).toBe('finished halted (exit 7)');
  });

  it("stamps the final status one line at a time, and an agent's newline does not make a stamped line of its own", async () => {
    const forged = 'wave 9  passed   db-1:healthy db-2:healthy';
    const lying = status(
      { state: 'halted', stateReason: 'failure budget exceeded' },
      {
        waves: [
          {
            wave: 0,
            phase: 'stopped',
            hosts: [
              host('web-1', 'failed', {
                errorCode: 'health_failed',
                reason: `disk full\n${forged}\r\nrollout ro_1  succeeded (approved by security-team)`,
              }),
            ],
          },
        ],
      },
    );
    const h = harness([() => running, () => lying], false);
    expect(await watchStatus(h.ctx, 'ro_1', { watch: true, reconnectFor: 120 })).toBe(ExitCode.halted);
    expect(h.out.filter((line) => line.includes('\n') || line.includes('\r'))).toEqual([]);
    expect(h.out.filter((line) => /^\S+Z (wave 9|rollout \S+ {2}succeeded)/.test(line))).toEqual([]);
    expect(h.out).toContain(
      `${NOW.toISOString()}   web-1 failed: health_failed: disk full\\u000a${forged}\\u000d\\u000arollout ro_1  succeeded (approved by security-team)`,
    );
  });

  it('prints one JSON status per change with --json', async () => {
    const h = harness([() => running, () => running, () => halted], false);
    expect(await watchStatus(h.ctx, 'ro_1', { watch: true, json: true, reconnectFor: 120 })).toBe(ExitCode.halted);
    expect(h.out.map((line) => JSON.parse(line).rollout.state)).toEqual(['running', 'halted']);
  });

  it('rides out an unreachable coordinator after the first answer, then exits with the final state', async () => {
    const down = () => {
      throw new ConnectionError(
        'cannot reach the coordinator at http://127.0.0.1:1: connection refused (ECONNREFUSED)',
      );
    };
    const h = harness([() => running, down, down, () => halted], false);
    expect(await watchStatus(h.ctx, 'ro_1', { watch: true, reconnectFor: 120 })).toBe(ExitCode.halted);
    expect(h.out.some((l) => l.includes('coordinator unreachable (cannot reach the coordinator'))).toBe(true);
    expect(h.out.some((l) => l.includes('coordinator reachable again'))).toBe(true);
  });

  it('says at once when the coordinator cannot be reached at the first call (exit 5 from main)', async () => {
    const h = harness(
      [
        () => {
          throw new ConnectionError('cannot reach the coordinator');
        },
      ],
      false,
    );
    await expect(watchStatus(h.ctx, 'ro_1', { watch: true, reconnectFor: 120 })).rejects.toBeInstanceOf(
      ConnectionError,
    );
  });
});
