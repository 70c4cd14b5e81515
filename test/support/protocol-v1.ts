/**
 * Protocol 1, frozen: the frames exactly as agents before protocol 2 parse and send them (copied from
 * packages/shared/src/protocol.ts at 751d5ad), every object `.strict()` as it was then. Never edit it to
 * follow the current protocol: it stands for agents already out in the fleet.
 *
 * The order payloads (`change`, health policy) and the string grammars come from shared: they were
 * and stay `.strict()`, and changing them needs a new protocol version anyway.
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  ChallengeNonceSchema,
  ChangeSchema,
  ErrorCode,
  fileContentBytes,
  HealthPolicySchema,
  LabelsSchema,
  SignatureSchema,
} from '@fleetpatch/shared';
import type WebSocket from 'ws';
import { z } from 'zod';
import { type AgentIdentity, openAgentSocket, signedHello } from './agent-identity.js';

const OrderIdSchema = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,99}$/);
const IsoTimeSchema = z.string().min(1).max(40);
const PhaseSchema = z.enum([
  'accepted',
  'baseline',
  'snapshotted',
  'applying',
  'applied',
  'verifying',
  'reverting',
  'done',
]);

const FactsV1Schema = z
  .object({
    hostname: z.string().max(255),
    os: z.string().max(100),
    distro: z.string().max(100),
    release: z.string().max(100),
    kernel: z.string().max(200),
    arch: z.string().max(50),
    cpus: z.number().int().min(0),
    memoryBytes: z.number().int().min(0),
  })
  .strict();

const HealthCheckResultV1Schema = z
  .object({ check: z.string(), kind: z.string(), ok: z.boolean(), observed: z.string().max(4096), at: z.string() })
  .strict();

const OrderResultBodyV1Schema = z
  .object({
    orderId: OrderIdSchema,
    outcome: z.enum([
      'healthy',
      'failed',
      'skipped',
      'cancelled',
      'reverted',
      'revert_failed',
      'would_apply',
      'already_applied',
      'would_fail',
      'blocked',
    ]),
    changed: z.boolean(),
    errorCode: z.enum(Object.values(ErrorCode) as [ErrorCode, ...ErrorCode[]]).optional(),
    reason: z.string().max(8192).optional(),
    health: z.array(HealthCheckResultV1Schema).max(500).optional(),
    finishedAt: IsoTimeSchema,
  })
  .strict();

// ---- agent → coordinator, v1 ----

const HelloV1Schema = z
  .object({
    type: z.literal('hello'),
    protocolVersion: z.number().int().min(1),
    proof: SignatureSchema,
    agentVersion: z.string().max(50),
    labels: LabelsSchema,
    facts: FactsV1Schema,
    orders: z
      .array(
        z.object({ orderId: OrderIdSchema, phase: PhaseSchema, result: OrderResultBodyV1Schema.optional() }).strict(),
      )
      .max(10_000),
  })
  .strict();

export const AgentMessageV1Schema = z.discriminatedUnion('type', [
  HelloV1Schema,
  z.object({ type: z.literal('heartbeat'), journalSeq: z.number().int().min(0), sentAt: IsoTimeSchema }).strict(),
  z
    .object({
      type: z.literal('order.progress'),
      orderId: OrderIdSchema,
      phase: PhaseSchema,
      message: z.string().max(2000).optional(),
      health: z.array(HealthCheckResultV1Schema).max(64).optional(),
    })
    .strict(),
  OrderResultBodyV1Schema.extend({ type: z.literal('order.result') }).strict(),
  z.object({ type: z.literal('facts'), facts: FactsV1Schema }).strict(),
]);
export type AgentMessageV1 = z.infer<typeof AgentMessageV1Schema>;

// ---- coordinator → agent, v1 ----

const SecondsSchema = z
  .number()
  .min(0)
  .max(7 * 24 * 3600);

export const CoordinatorMessageV1Schema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('challenge'), nonce: ChallengeNonceSchema }).strict(),
  z
    .object({
      type: z.literal('welcome'),
      protocolVersion: z.number().int().min(1),
      agentId: z.string(),
      heartbeatIntervalMs: z.number().int().min(100),
    })
    .strict(),
  z
    .object({
      type: z.literal('order.apply'),
      orderId: OrderIdSchema,
      rolloutId: z.string().max(100),
      patchId: z.string().max(100),
      change: ChangeSchema,
      health: HealthPolicySchema,
      failIfUnhealthyBefore: z.boolean().default(false),
      revertOnHealthFailure: z.boolean().default(true),
      bakeSeconds: SecondsSchema.default(0),
    })
    .strict(),
  z.object({ type: z.literal('order.revert'), orderId: OrderIdSchema, revertsOrderId: OrderIdSchema }).strict(),
  z.object({ type: z.literal('order.preflight'), orderId: OrderIdSchema, change: ChangeSchema }).strict(),
  z.object({ type: z.literal('order.watch'), orderId: OrderIdSchema, seconds: SecondsSchema }).strict(),
  z.object({ type: z.literal('order.cancel'), orderId: OrderIdSchema }).strict(),
  z.object({ type: z.literal('order.ack'), orderId: OrderIdSchema, finishedAt: IsoTimeSchema.optional() }).strict(),
]);
export type CoordinatorMessageV1 = z.infer<typeof CoordinatorMessageV1Schema>;

/**
 * The smallest honest protocol 1 agent: says hello with `protocolVersion: 1`, parses every frame with
 * the frozen schemas (a frame it cannot parse closes the socket with 4400, as a v1 agent did), and
 * carries out file orders under `rootDir` — the prior bytes kept in memory as its snapshot.
 */
export class ProtocolV1Agent {
  /** Every coordinator frame, as parsed by the v1 schemas. */
  readonly received: CoordinatorMessageV1[] = [];
  /** Frames the v1 schemas refused: any entry here would have disconnected a v1 agent. */
  readonly refused: { frame: string; error: string }[] = [];
  private readonly snapshots = new Map<string, { path: string; prior: Buffer | null }>();
  private heartbeat: NodeJS.Timeout | undefined;
  private journalSeq = 0;

  private constructor(
    private readonly socket: WebSocket,
    private readonly rootDir: string,
  ) {}

  /** Connects as `identity` and resolves once welcomed. */
  static async connect(coordinatorUrl: string, identity: AgentIdentity, rootDir: string): Promise<ProtocolV1Agent> {
    const agent = new ProtocolV1Agent(openAgentSocket(coordinatorUrl, identity.hostId), rootDir);
    return new Promise((resolve, reject) => {
      agent.socket.once('close', (code, reason) => reject(new Error(`v1 agent closed: ${code} ${reason}`)));
      agent.socket.on('message', (data) => {
        const message = agent.read(data.toString());
        if (message?.type === 'challenge') {
          const { protocolVersions: _v2, ...hello } = signedHello(identity, message.nonce, { protocolVersion: 1 });
          agent.send(hello as AgentMessageV1);
        } else if (message?.type === 'welcome') {
          agent.heartbeat = setInterval(
            () => agent.send({ type: 'heartbeat', journalSeq: agent.journalSeq, sentAt: new Date().toISOString() }),
            message.heartbeatIntervalMs,
          );
          resolve(agent);
        } else if (message) {
          agent
            .handle(message)
            .catch((err: unknown) => agent.refused.push({ frame: message.type, error: String(err) }));
        }
      });
    });
  }

  close(): void {
    clearInterval(this.heartbeat);
    this.socket.close(1000, 'test over');
  }

  private read(frame: string): CoordinatorMessageV1 | undefined {
    const parsed = CoordinatorMessageV1Schema.safeParse(JSON.parse(frame));
    if (!parsed.success) {
      this.refused.push({ frame, error: z.prettifyError(parsed.error) });
      this.socket.close(4400, 'bad frame');
      return undefined;
    }
    this.received.push(parsed.data);
    return parsed.data;
  }

  /** Only v1 frames leave this agent: each is checked against the frozen schema before it is sent. */
  private send(message: AgentMessageV1): void {
    this.socket.send(JSON.stringify(AgentMessageV1Schema.parse(message)));
    this.journalSeq++;
  }

  private async handle(message: CoordinatorMessageV1): Promise<void> {
    const finishedAt = () => new Date().toISOString();
    if (message.type === 'order.apply') {
      const { change, orderId } = message;
      if (change.kind !== 'file') throw new Error('the v1 test agent applies file changes only');
      const path = join(this.rootDir, change.path);
      this.snapshots.set(orderId, { path, prior: await readFile(path).catch(() => null) });
      this.send({ type: 'order.progress', orderId, phase: 'snapshotted' });
      await mkdir(dirname(path), { recursive: true });
      await writeFile(path, fileContentBytes(change));
      this.send({ type: 'order.progress', orderId, phase: 'verifying' });
      this.send({ type: 'order.result', orderId, outcome: 'healthy', changed: true, finishedAt: finishedAt() });
    } else if (message.type === 'order.revert') {
      const snapshot = this.snapshots.get(message.revertsOrderId);
      if (!snapshot) throw new Error(`no snapshot of ${message.revertsOrderId}`);
      if (snapshot.prior) await writeFile(snapshot.path, snapshot.prior);
      else await rm(snapshot.path, { force: true });
      this.send({
        type: 'order.result',
        orderId: message.orderId,
        outcome: 'reverted',
        changed: false,
        finishedAt: finishedAt(),
      });
    }
  }
}
