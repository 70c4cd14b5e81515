import type { AgentView } from '@fleetpatch/shared';
import { describe, expect, it } from 'vitest';
import { renderAgentDetail, renderAgents } from '../src/render-agents.js';

const NOW = new Date('2030-01-01T00:01:00Z');
const agent = (id: string, labels: Record<string, string>, reportedLabels: Record<string, string>): AgentView => ({
  id,
  labels,
  reportedLabels,
  facts: null,
  agentVersion: '1.0.0',
  lastSeenAt: '2030-01-01T00:00:30Z',
  createdAt: '2030-01-01T00:00:00Z',
  enrolledAt: '2030-01-01T00:00:00Z',
  revokedAt: null,
  online: true,
});

describe('renderAgents', () => {
  it("shows the admin's labels, and apart what the host reports beyond them", () => {
    const table = renderAgents(
      [agent('db-1', { role: 'db' }, { role: 'web', canary: 'yes' }), agent('web-1', { role: 'web' }, { role: 'web' })],
      NOW,
    ).split('\n');
    expect(table[0]).toMatch(/^ID\s+ONLINE\s+LABELS\s+REPORTED\s+OS\/ARCH\s+LAST SEEN$/);
    expect(table[1]).toMatch(/^db-1\s+yes\s+role=db\s+role=web,canary=yes\s+-\s+30s ago$/);
    expect(table[2]).toMatch(/^web-1\s+yes\s+role=web\s+-\s+-\s+30s ago$/);
  });

  it('shows one host with both maps, the reported one marked as its word', () => {
    const shown = renderAgentDetail({ agent: agent('db-1', { role: 'db' }, { role: 'web' }), hostRuns: [] }, NOW);
    expect(shown).toContain('labels    role=db\n');
    expect(shown).toMatch(/reported {2}role=web {2}\(the host's word: targets match it only by reportedLabels\)/);
  });

  it('says "unknown" for a host run whose change is not known, never "no"', () => {
    const run = { rolloutId: 'ro_1', wave: 0, state: 'timed_out' as const, orderId: 'ord_1', errorCode: 'timed_out' };
    const shown = renderAgentDetail(
      {
        agent: agent('db-1', {}, {}),
        hostRuns: [
          { ...run, changed: 'unknown', reason: 'no result within 60s' },
          { ...run, rolloutId: 'ro_2', changed: false, reason: 'no result within 60s' },
        ],
      },
      NOW,
    ).split('\n');
    expect(shown.at(-2)).toMatch(/^ro_1\s+1\s+timed_out\s+unknown \(no answer yet\)\s+no result within 60s$/);
    expect(shown.at(-1)).toMatch(/^ro_2\s+1\s+timed_out\s+no\s+no result within 60s$/);
  });

  it("shows what a package change resolved to in the host's history", () => {
    const run = { wave: 0, changed: false, orderId: null, errorCode: null, reason: null };
    const shown = renderAgentDetail(
      {
        agent: agent('db-1', {}, {}),
        hostRuns: [
          {
            ...run,
            rolloutId: 'ro_2',
            state: 'healthy',
            changed: true,
            packages: [{ name: 'libssl3', from: '3.0.14-1', to: '3.0.15-1', snapshot: 'apt-cache' }],
          },
          { ...run, rolloutId: 'ro_1', state: 'not_applicable', reason: 'no binary package of source fpsrc' },
        ],
      },
      NOW,
    ).split('\n');
    expect(shown.find((l) => l.startsWith('ROLLOUT'))).toMatch(/^ROLLOUT\s+WAVE\s+STATE\s+CHANGED\s+PACKAGES\s+WHY$/);
    expect(shown.find((l) => l.startsWith('ro_2'))).toMatch(
      /healthy\s+yes\s+libssl3 3\.0\.14-1 → 3\.0\.15-1 \(apt-cache\)/,
    );
    expect(shown.find((l) => l.startsWith('ro_1'))).toMatch(/not_applicable\s+no\s+no binary package of source fpsrc$/);
  });
});

describe('a hostile host in the agent views', () => {
  it('cannot forge lines or drive the terminal through its labels, facts or version', () => {
    const hostile: AgentView = {
      ...agent('web-6', { role: 'web' }, { role: 'web\x1b]0;owned\x07\nweb-7  yes' }),
      agentVersion: '1.0\x1b[2J',
      facts: {
        hostname: 'h\x9b2J\nforged',
        distro: 'debian',
        release: '12',
        arch: 'amd64',
        kernel: '6.1',
        cpus: 2,
        os: 'linux',
      } as AgentView['facts'],
    };
    const views = [renderAgents([hostile], NOW), renderAgentDetail({ agent: hostile, hostRuns: [] }, NOW)];
    for (const view of views) {
      for (const raw of ['\x1b', '\x07', '\x9b']) expect(view).not.toContain(raw);
      expect(view).not.toMatch(/^(web-7|forged)/m);
    }
    expect(views[0]).toContain('role=web\\u001b]0;owned\\u0007\\u000aweb-7  yes');
    expect(views[1]).toContain('h\\u009b2J\\u000aforged debian 12 amd64');
  });
});
