import type { KeyObject } from 'node:crypto';
import {
  EnrollResultSchema,
  enrollProofPayload,
  generateAgentKeyPair,
  JoinTokenCreatedSchema,
  loadPrivateKey,
  signPayload,
} from '@fleetpatch/shared';
import type { FastifyInstance } from 'fastify';

/**
 * Enrolls host `id` through the API as an agent would: an admin issues a join token for it, the
 * "agent" makes a key pair and enrolls with proof of possession. Returns the key for the socket.
 * Unless `neverConnected`, the host is then on record as seen once (as though its agent had
 * connected and gone away), so a rollout may plan it as a canary (one that never connected is not).
 */
export async function enrollAgent(
  app: FastifyInstance,
  adminToken: string,
  id: string,
  labels: Record<string, string> = {},
  options: { neverConnected?: boolean } = {},
): Promise<{ publicKey: string; privateKey: KeyObject }> {
  const issued = await app.inject({
    method: 'POST',
    url: '/v1/join-tokens',
    headers: { authorization: `Bearer ${adminToken}` },
    payload: { hostId: id, labels },
  });
  if (issued.statusCode !== 201) throw new Error(`join token for ${id}: ${issued.statusCode} ${issued.body}`);
  const { token } = JoinTokenCreatedSchema.parse(issued.json());
  const pair = generateAgentKeyPair();
  const privateKey = loadPrivateKey(pair.privateKeyPem);
  const enrolled = await app.inject({
    method: 'POST',
    url: '/v1/enroll',
    headers: { authorization: `Bearer ${token}` },
    payload: {
      hostId: id,
      publicKey: pair.publicKey,
      proof: signPayload(privateKey, enrollProofPayload(id, pair.publicKey)),
    },
  });
  if (enrolled.statusCode !== 201) throw new Error(`enroll ${id}: ${enrolled.statusCode} ${enrolled.body}`);
  EnrollResultSchema.parse(enrolled.json());
  if (options.neverConnected !== true) {
    const { store } = app.fleet;
    await store.transaction(async () => await store.agents.recordSightings([[id, new Date().toISOString()]]));
  }
  return { publicKey: pair.publicKey, privateKey };
}
