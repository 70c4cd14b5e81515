import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { EnrollmentRefused, enrollWithCoordinator } from '../src/enrollment-client.js';

// A real HTTP server on 127.0.0.1 answering the enrollment with a fixed status: what the agent makes
// of each answer decides whether it retries (transient) or stops for a human (refused).

let server: Server | undefined;

afterEach(async () => {
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
});

async function coordinatorAnswering(status: number): Promise<string> {
  const listening = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'x', message: `answered ${status}` } }));
    });
  });
  server = listening;
  await new Promise<void>((resolve) => listening.listen(0, '127.0.0.1', resolve));
  return `ws://127.0.0.1:${(listening.address() as AddressInfo).port}`;
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
