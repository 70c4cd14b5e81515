import { generateAgentKeyPair, PROTOCOL_VERSION } from '@fleetpatch/shared';
import type { WebSocket } from 'ws';
import { writeCredential } from '../../src/agent-credential.js';

// What the agent tests that stand in for a coordinator (a plain ws WebSocketServer) share.

/**
 * An enrolled agent's data dir: a fresh key pair stored as `hostId`'s credential. Returns the
 * public key, which a coordinator checks the agent's connect proof against.
 */
export async function writeTestCredential(dataDir: string, hostId = 'web-1'): Promise<string> {
  const pair = generateAgentKeyPair();
  await writeCredential(
    dataDir,
    { hostId, publicKey: pair.publicKey, privateKeyPem: pair.privateKeyPem },
    new Date().toISOString(),
  );
  return pair.publicKey;
}

/** The answer to a hello: an agent acts on nothing before a welcome it accepted. */
export function sendWelcome(socket: WebSocket, agentId = 'web-1'): void {
  socket.send(
    JSON.stringify({
      type: 'welcome',
      protocolVersion: PROTOCOL_VERSION,
      agentId,
      heartbeatIntervalMs: 10_000,
    }),
  );
}
