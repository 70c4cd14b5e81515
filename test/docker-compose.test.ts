/**
 * docker-compose.yml cannot be run here (no Docker engine), so its security properties are read off
 * the file itself: no default admin token, each agent sees only its own join token, services restart.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Service {
  environment?: Record<string, string>;
  volumes?: string[];
  restart?: string;
  command?: string[];
}

const AGENTS = ['agent-1', 'agent-2', 'agent-3'];
let services: Record<string, Service>;

beforeAll(async () => {
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'docker-compose.yml');
  services = (parse(await readFile(file, 'utf8'), { merge: true }) as { services: Record<string, Service> }).services;
});

describe('docker-compose.yml', () => {
  it('has no default admin token: compose refuses to start without one', () => {
    for (const name of ['coordinator', 'join-tokens']) {
      expect(services[name]?.environment?.FLEETPATCH_ADMIN_TOKEN).toMatch(/^\$\{FLEETPATCH_ADMIN_TOKEN:\?/);
    }
    const text = JSON.stringify(services);
    expect(text).not.toMatch(/FLEETPATCH_ADMIN_TOKEN:-/);
  });

  it('gives each agent its own join token volume and nothing of another agent, and no admin token', () => {
    for (const agent of AGENTS) {
      const service = services[agent] as Service;
      const mounts = service.volumes ?? [];
      expect(mounts).toContain(`join-${agent}:/run/fleetpatch:ro`);
      for (const other of AGENTS.filter((a) => a !== agent)) {
        expect(mounts.join(' ')).not.toContain(other);
      }
      expect(service.environment?.FLEETPATCH_HOST_ID).toBe(agent);
      expect(service.environment?.FLEETPATCH_JOIN_TOKEN_FILE).toBe('/run/fleetpatch/join-token');
      expect(JSON.stringify(service.environment)).not.toContain('ADMIN');
    }
  });

  it('restarts the coordinator and the agents', () => {
    for (const name of ['coordinator', ...AGENTS]) expect(services[name]?.restart).toBe('unless-stopped');
  });
});
