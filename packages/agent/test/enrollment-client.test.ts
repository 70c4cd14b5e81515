import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateAgentKeyPair, loadPrivateKey } from '@fleetpatch/shared';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EnrollmentRefused,
  EnrollmentUnanswered,
  enrollAndStore,
  enrollWithCoordinator,
} from '../src/enrollment-client.js';

// A real HTTP server on 127.0.0.1 answering the enrollment with a fixed status: what the agent makes
// of each answer decides whether it retries (transient) or stops for a human (refused).

const servers: Server[] = [];
/** Enrollment requests each coordinator URL received. */
const requests = new Map<string, number>();

afterEach(async () => {
  for (const server of servers.splice(0)) await new Promise<void>((resolve) => server.close(() => resolve()));
  requests.clear();
});

async function coordinatorAnswering(status: number): Promise<string> {
  let url = '';
  const listening = createServer((req, res) => {
    requests.set(url, (requests.get(url) ?? 0) + 1);
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json' });
      const accepted = { hostId: 'web-1', labels: { answeredBy: String(status) }, replaced: false };
      res.end(JSON.stringify(status === 201 ? accepted : { error: { code: 'x', message: `answered ${status}` } }));
    });
  });
  servers.push(listening);
  await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
  url = `ws://127.0.0.1:${(listening.address() as AddressInfo).port}`;
  return url;
}

/** A URL nothing listens on: a coordinator that is down. */
async function coordinatorDown(): Promise<string> {
  const url = await coordinatorAnswering(201);
  const server = servers.pop() as Server;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return url;
}

const attempt = async (status: number) =>
  enrollWithCoordinator({
    coordinatorUrl: await coordinatorAnswering(status),
    joinToken: 'fpj_x',
    hostId: 'web-1',
  }).then(
    () => undefined,
    (err: Error) => err,
  );

describe('an enrollment answer', () => {
  it.each([400, 401, 403, 404, 409, 413])('HTTP %i is a refusal: retrying will not help', async (status) => {
    const err = await attempt(status);
    expect(err).toBeInstanceOf(EnrollmentRefused);
    expect(err).toMatchObject({ status, message: `answered ${status}` });
  });

  it.each([408, 429, 500, 502, 503])('HTTP %i is transient: the agent tries again', async (status) => {
    const err = await attempt(status);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(EnrollmentRefused);
    expect(err?.message).toBe(`enrollment failed: HTTP ${status}: answered ${status}`);
  });
});

describe('enrolling with a group of coordinators', () => {
  const enroll = async (coordinatorUrls: string[]) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'agent-enroll-'));
    const outcome = await enrollAndStore({ coordinatorUrls, tls: {}, dataDir }, 'fpj_x', 'web-1').then(
      (enrolled) => ({ enrolled, err: undefined }),
      (err: Error) => ({ enrolled: undefined, err }),
    );
    const credential = await readFile(join(dataDir, 'credential.json'), 'utf8').catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    return { ...outcome, credential };
  };

  it('tries the URLs in order until one takes it: down, then "not now", then yes', async () => {
    const down = await coordinatorDown();
    const busy = await coordinatorAnswering(503);
    const accepting = await coordinatorAnswering(201);
    const { enrolled, credential } = await enroll([down, busy, accepting]);
    expect(enrolled).toEqual({
      coordinatorUrl: accepting,
      result: expect.objectContaining({ hostId: 'web-1' }),
      credential: expect.objectContaining({ hostId: 'web-1' }),
    });
    // The credential given back is the one written, its key loaded (the agent connects with it).
    const written = JSON.parse(credential ?? '{}');
    expect(written).toMatchObject({ hostId: 'web-1', publicKey: enrolled?.credential.publicKey });
    expect(Object.keys(written).sort()).toEqual(['enrolledAt', 'hostId', 'privateKeyPem', 'publicKey']);
    expect(enrolled?.credential.privateKey.export({ format: 'jwk' })).toEqual(
      loadPrivateKey(written.privateKeyPem).export({ format: 'jwk' }),
    );
    expect([requests.get(busy), requests.get(accepting)]).toEqual([1, 1]);
  });

  it('stops at a refusal: the others share its join tokens and would refuse too', async () => {
    const refusing = await coordinatorAnswering(403);
    const accepting = await coordinatorAnswering(201);
    const { err, credential } = await enroll([refusing, accepting]);
    expect(err).toBeInstanceOf(EnrollmentRefused);
    expect(requests.get(accepting)).toBeUndefined();
    expect(credential).toBeUndefined();
  });

  it('when none answers, says what each said, and writes no credential', async () => {
    const down = await coordinatorDown();
    const busy = await coordinatorAnswering(503);
    const { err, credential } = await enroll([down, busy]);
    expect(err).toBeInstanceOf(EnrollmentUnanswered);
    expect((err as EnrollmentUnanswered).failures.map((f) => f.coordinatorUrl)).toEqual([down, busy]);
    expect(err?.message).toMatch(new RegExp(`^${down}: .*ECONNREFUSED.*; ${busy}: enrollment failed: HTTP 503`));
    expect(credential).toBeUndefined();
  });
});

describe('an enrollment whose answer is lost', () => {
  /** A coordinator that takes each enrollment (it enrolls the key) but answers `status`, keeping the keys offered. */
  async function coordinatorKeeping(status: number): Promise<{ url: string; keys: string[] }> {
    const keys: string[] = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        keys.push((JSON.parse(Buffer.concat(chunks).toString('utf8')) as { publicKey: string }).publicKey);
        res.writeHead(status, { 'content-type': 'application/json' });
        const accepted = { hostId: 'web-1', labels: {}, replaced: false };
        res.end(JSON.stringify(status === 201 ? accepted : { error: { code: 'x', message: `answered ${status}` } }));
      });
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return { url: `ws://127.0.0.1:${(server.address() as AddressInfo).port}`, keys };
  }

  it('is tried again with the same key, also by an agent restarted meanwhile, until the credential holds it', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'agent-enroll-'));
    try {
      // The gateway in front of the coordinator timed out (504) after the coordinator had enrolled the key.
      const lost = await coordinatorKeeping(504);
      for (let attempt = 0; attempt < 3; attempt++) {
        await expect(
          enrollAndStore({ coordinatorUrls: [lost.url], tls: {}, dataDir }, 'fpj_x', 'web-1'),
        ).rejects.toThrow(EnrollmentUnanswered);
      }
      expect(lost.keys).toHaveLength(3);
      expect(new Set(lost.keys).size).toBe(1);
      // Kept for the next attempt (a restarted agent reads it), readable by root only.
      expect((await stat(join(dataDir, 'enrollment-key.json'))).mode & 0o777).toBe(0o600);

      const answering = await coordinatorKeeping(201);
      await enrollAndStore({ coordinatorUrls: [answering.url], tls: {}, dataDir }, 'fpj_x', 'web-1');
      expect(answering.keys).toEqual([lost.keys[0]]);
      const credential = JSON.parse(await readFile(join(dataDir, 'credential.json'), 'utf8')) as { publicKey: string };
      expect(credential.publicKey).toBe(lost.keys[0]);
      // Enrolled: the key lives on in the credential only.
      await expect(stat(join(dataDir, 'enrollment-key.json'))).rejects.toThrow(/ENOENT/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it.each([
    [
      'cannot be loaded',
      (publicKey: string) => ({
        publicKey,
        privateKeyPem: '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
      }),
    ],
    [
      'holds another key than the public key beside it',
      (publicKey: string) => ({ publicKey, privateKeyPem: generateAgentKeyPair().privateKeyPem }),
    ],
  ])('makes a new key when the one kept %s, instead of failing on it for ever', async (_, broken) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'agent-enroll-'));
    try {
      const { publicKey } = generateAgentKeyPair();
      await writeFile(join(dataDir, 'enrollment-key.json'), JSON.stringify(broken(publicKey)), { mode: 0o600 });
      const answering = await coordinatorKeeping(201);
      const enrolled = await enrollAndStore({ coordinatorUrls: [answering.url], tls: {}, dataDir }, 'fpj_x', 'web-1');
      expect(answering.keys).toHaveLength(1);
      expect(answering.keys[0]).not.toBe(publicKey);
      expect(enrolled.credential.publicKey).toBe(answering.keys[0]);
      const credential = JSON.parse(await readFile(join(dataDir, 'credential.json'), 'utf8')) as {
        privateKeyPem: string;
      };
      expect(loadPrivateKey(credential.privateKeyPem).export({ format: 'jwk' })).toEqual(
        enrolled.credential.privateKey.export({ format: 'jwk' }),
      );
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
