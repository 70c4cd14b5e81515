/**
 * docker-compose.yml cannot be run here (no Docker engine), so its security properties are read off
 * the file itself: no default admin token, each agent sees only its own join token, services restart;
 * and the `postgres` profile's group is checked against the real configuration loaders.
 */
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadAgentConfig } from '@fleetpatch/agent';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadCoordinatorConfig } from '../packages/coordinator/src/config.js';

interface Service {
  image?: string;
  profiles?: string[];
  environment?: Record<string, string>;
  volumes?: string[];
  restart?: string;
  command?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] };
}

const AGENTS = ['agent-1', 'agent-2', 'agent-3', 'agent-pg-1'];
const PG_COORDINATORS = ['coordinator-pg-1', 'coordinator-pg-2'];
let services: Record<string, Service>;

beforeAll(async () => {
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'docker-compose.yml');
  services = (parse(await readFile(file, 'utf8'), { merge: true }) as { services: Record<string, Service> }).services;
});

describe('docker-compose.yml', () => {
  it('has no default admin token: compose refuses to start without one', () => {
    for (const name of ['coordinator', 'join-tokens', ...PG_COORDINATORS, 'join-tokens-pg']) {
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

  it("makes each agent's allowed root in the image: an agent creates no directory, so a patch needs it there", async () => {
    const dockerfile = await readFile(join(dirname(fileURLToPath(import.meta.url)), '..', 'Dockerfile'), 'utf8');
    const finalStage = dockerfile.slice(dockerfile.lastIndexOf('\nFROM '));
    for (const agent of AGENTS) {
      const command = services[agent]?.command ?? [];
      const root = command[command.indexOf('--allow-root') + 1];
      expect(root, agent).toMatch(/^\/etc\/[a-z-]+$/);
      // Root's, and writable by nobody else: the file driver refuses a parent others can write.
      expect(finalStage).toContain(`RUN install -d -o root -g root -m 0755 ${root}`);
    }
  });

  it('restarts the coordinators, the agents and the database', () => {
    for (const name of ['coordinator', ...PG_COORDINATORS, 'postgres', ...AGENTS]) {
      expect(services[name]?.restart).toBe('unless-stopped');
    }
  });
});

/** What compose makes of `${VAR:-}` and `${VAR:?message}` with `vars` set. */
function interpolate(environment: Record<string, string> = {}, vars: Record<string, string>): Record<string, string> {
  const value = (text: string) => text.replace(/\$\{(\w+):[-?][^}]*\}/g, (_, name: string) => vars[name] ?? '');
  return Object.fromEntries(Object.entries(environment).map(([key, text]) => [key, value(text)]));
}

describe('docker-compose.yml, profile postgres', () => {
  const inProfile = () => Object.keys(services).filter((name) => services[name]?.profiles?.includes('postgres'));

  it('leaves the default services as they were: one coordinator on SQLite and its three agents', () => {
    const always = Object.keys(services).filter((name) => services[name]?.profiles === undefined);
    expect(always).toEqual(['coordinator', 'join-tokens', 'agent-1', 'agent-2', 'agent-3']);
    expect(services.coordinator?.environment).not.toHaveProperty('FLEETPATCH_STORE_URL');
    expect(inProfile().sort()).toEqual([...PG_COORDINATORS, 'agent-pg-1', 'join-tokens-pg', 'postgres'].sort());
  });

  it('runs PostgreSQL 15 on a volume, healthchecked, with no default password', () => {
    const postgres = services.postgres as Service;
    expect(postgres.image).toBe('postgres:15');
    expect(postgres.volumes).toContain('postgres-data:/var/lib/postgresql/data');
    expect(postgres.healthcheck?.test).toEqual(expect.arrayContaining(['pg_isready']));
    // Empty unless given: the postgres image then refuses to initialise, rather than take a known password.
    expect(postgres.environment?.POSTGRES_PASSWORD).toMatch(/^\$\{FLEETPATCH_POSTGRES_PASSWORD:-\}$/);
    expect(postgres.ports).toBeUndefined();
  });

  it('runs two coordinators on that database, each once it is healthy, each on its own published port', () => {
    const vars = { FLEETPATCH_POSTGRES_PASSWORD: 'f00d', FLEETPATCH_ADMIN_TOKEN: 'a'.repeat(48) };
    const ports = new Set<string>();
    for (const name of PG_COORDINATORS) {
      const service = services[name] as Service;
      expect(service.depends_on?.postgres).toEqual({ condition: 'service_healthy' });
      expect(service.environment?.FLEETPATCH_ADMIN_TOKEN).toMatch(/^\$\{FLEETPATCH_ADMIN_TOKEN:\?/);
      for (const port of service.ports ?? []) ports.add(port);
      // The coordinator's own loader reads what compose passes: a PostgreSQL store on the `postgres` service.
      const config = loadCoordinatorConfig({ env: interpolate(service.environment, vars), flags: {} });
      // Each with its own name in the group, and the default lease.
      expect(config.store).toEqual({
        kind: 'postgres',
        url: 'postgres://fleetpatch:f00d@postgres:5432/fleetpatch',
        coordinatorId: name,
        leaseMs: 10_000,
      });
      expect(config.port).toBe(7420);
    }
    expect([...ports]).toEqual(['127.0.0.1:7421:7420', '127.0.0.1:7422:7420']);
  });

  it('gives its agent both coordinators, in order, and a join token issued by the group', () => {
    const agent = services['agent-pg-1'] as Service;
    const { FLEETPATCH_JOIN_TOKEN_FILE: _readAtStart, ...environment } = interpolate(agent.environment, {});
    const config = loadAgentConfig({ env: environment, flags: {} });
    expect(config.coordinatorUrls).toEqual(['http://coordinator-pg-1:7420', 'http://coordinator-pg-2:7420']);
    for (const url of config.coordinatorUrls) expect(inProfile()).toContain(new URL(url).hostname);
    expect(agent.depends_on?.['join-tokens-pg']).toEqual({ condition: 'service_completed_successfully' });
    const issuer = services['join-tokens-pg'] as Service;
    expect(PG_COORDINATORS).toContain(new URL(issuer.environment?.FLEETPATCH_COORDINATOR_URL ?? '').hostname);
    expect(issuer.depends_on?.['coordinator-pg-1']).toEqual({ condition: 'service_healthy' });
    expect(issuer.volumes).toEqual(['join-agent-pg-1:/join/agent-pg-1']);
  });
});
