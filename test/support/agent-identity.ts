/**
 * Speaks for an agent without the agent binary: enrolls a key pair under a join token and answers
 * the coordinator's challenge, for tests that need a hand-driven agent socket.
 */

import type { KeyObject } from 'node:crypto';
import {
  AGENT_ID_HEADER,
  connectProofPayload,
  enrollProofPayload,
  generateAgentKeyPair,
  type Hello,
  loadPrivateKey,
  SUPPORTED_PROTOCOL_VERSIONS,
  signPayload,
} from '@fleetpatch/shared';
import WebSocket from 'ws';
import { type ApiClient, issueJoinToken } from '../../scripts/lib/local-fleet.mjs';

export interface AgentIdentity {
  hostId: string;
  publicKey: string;
  privateKey: KeyObject;
}

/** A new key pair for `hostId`, enrolled with a fresh join token issued by the admin `api`. */
export async function enrollIdentity(
  coordinatorUrl: string,
  api: ApiClient,
  hostId: string,
  labels: Record<string, string> = {},
): Promise<AgentIdentity> {
  const joinToken = await issueJoinToken(api, hostId, labels);
  return enrollWith(coordinatorUrl, joinToken, hostId);
}

export async function enrollWith(coordinatorUrl: string, joinToken: string, hostId: string): Promise<AgentIdentity> {
  const pair = generateAgentKeyPair();
  const privateKey = loadPrivateKey(pair.privateKeyPem);
  const res = await fetch(`${coordinatorUrl}/v1/enroll`, {
    method: 'POST',
    headers: { authorization: `Bearer ${joinToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      hostId,
      publicKey: pair.publicKey,
      proof: signPayload(privateKey, enrollProofPayload(hostId, pair.publicKey)),
    }),
  });
  if (res.status !== 201) throw new Error(`enroll ${hostId}: HTTP ${res.status} ${await res.text()}`);
  return { hostId, publicKey: pair.publicKey, privateKey };
}

export function agentSocketUrl(coordinatorUrl: string): string {
  return `${coordinatorUrl.replace(/^http/, 'ws')}/v1/agents/connect`;
}

/** Opens the agent socket naming `hostId`; nothing is sent. */
export function openAgentSocket(coordinatorUrl: string, hostId: string): WebSocket {
  return new WebSocket(agentSocketUrl(coordinatorUrl), { headers: { [AGENT_ID_HEADER]: hostId } });
}

/** A hello answering `nonce`, signed by `identity`. */
export function signedHello(identity: AgentIdentity, nonce: string, overrides: Partial<Hello> = {}): Hello {
  return {
    type: 'hello',
    protocolVersions: SUPPORTED_PROTOCOL_VERSIONS,
    proof: signPayload(identity.privateKey, connectProofPayload(identity.hostId, nonce)),
    agentVersion: 'test',
    labels: {},
    facts: {
      hostname: identity.hostId,
      os: 'linux',
      distro: 'test',
      release: '1',
      kernel: '6.1',
      arch: 'x64',
      cpus: 1,
      memoryBytes: 1024,
    },
    orders: [],
    ...overrides,
  };
}

/** Resolves with the first frame of `type` the coordinator sends on `socket`. */
export function nextFrame<T extends { type: string }>(socket: WebSocket, type: T['type']): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (data: WebSocket.RawData) => {
      const frame = JSON.parse(data.toString()) as T;
      if (frame.type !== type) return;
      socket.off('message', onMessage);
      resolve(frame);
    };
    socket.on('message', onMessage);
    socket.once('close', (code) => reject(new Error(`socket closed (${code}) before a ${type} frame`)));
  });
}

/** Connects as `identity`, answers the challenge, and resolves once welcomed. */
export async function connectAs(coordinatorUrl: string, identity: AgentIdentity): Promise<WebSocket> {
  const socket = openAgentSocket(coordinatorUrl, identity.hostId);
  const challenge = await nextFrame<{ type: 'challenge'; nonce: string }>(socket, 'challenge');
  const welcomed = nextFrame(socket, 'welcome');
  socket.send(JSON.stringify(signedHello(identity, challenge.nonce)));
  await welcomed;
  return socket;
}

export function closeCode(socket: WebSocket): Promise<number> {
  return new Promise((resolve) => socket.once('close', (code) => resolve(code)));
}
