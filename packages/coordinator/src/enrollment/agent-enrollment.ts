import { randomBytes } from 'node:crypto';
import {
  byCodeUnits,
  type Clock,
  type EnrollRequest,
  type EnrollResult,
  ErrorCode,
  enrollProofPayload,
  FleetError,
  isoAt,
  type JoinTokenCreated,
  type JoinTokenRequest,
  type JoinTokenView,
  systemClock,
  verifyPayloadOffThread,
} from '@fleetpatch/shared';
import { IN_FLIGHT_HOST_STATES } from '../engine/host-run-states.js';
import { newId } from '../engine/ids.js';
import { sha256Hex } from '../http/api-auth.js';
import { type JoinTokenRecord, joinTokenState } from '../store/join-token-repository.js';
import { SharedCommit } from '../store/shared-commit.js';
import type { Store } from '../store/store.js';

export interface AgentEnrollmentOptions {
  store: Store;
  clock?: Pick<Clock, 'now'>;
  /** Cuts the live connection of an agent whose credential just stopped working. */
  disconnect(agentId: string, reason: string): void;
  /**
   * Runs work as an engine step (RolloutEngine.exclusive): a removal decides on the host's rollouts,
   * which only the engine writes. Absent (tests of enrollment alone): run as it comes.
   */
  exclusive?<T>(work: () => Promise<T>): Promise<T>;
}

/** An enrollment whose proof checked out, waiting for its turn's shared transaction. */
interface PendingEnrollment {
  secret: string;
  request: EnrollRequest;
  at: string;
}

/** What an enrollment's transaction decided (a refusal that writes its audit row is not thrown). */
type EnrollOutcome =
  | { refused: false; labels: Record<string, string>; replaced: boolean; repeated: boolean }
  | { refused: true; tokenId: string };

/**
 * Who may speak for a host: join tokens (issued by admins, stored hashed), enrollment (a join token
 * plus a public key the agent made, with proof it holds the private key), and revocation. Every
 * change is one transaction with its audit event; no secret ever reaches the audit log.
 */
export class AgentEnrollment {
  private readonly clock: Pick<Clock, 'now'>;
  /** Enrollments whose proofs checked out together share a commit: a fleet's first start is a sync per batch, not per agent. */
  private readonly enrollments: SharedCommit<PendingEnrollment, EnrollOutcome>;

  constructor(private readonly options: AgentEnrollmentOptions) {
    this.clock = options.clock ?? systemClock;
    // An enrollment locks its join token's row (the use it claims) and then its host's. Batches ordered
    // by token, then host, take the token rows in one order on every coordinator; the rare cycle left
    // (one host enrolling under two tokens at two coordinators at once) is retried alone (SharedCommit).
    this.enrollments = new SharedCommit(
      options.store,
      (pending) => this.enrollInTransaction(pending),
      (a, b) => byCodeUnits(a.secret, b.secret) || byCodeUnits(a.request.hostId, b.request.hostId),
    );
  }

  async createJoinToken(request: JoinTokenRequest, actor: string): Promise<JoinTokenCreated> {
    const { store } = this.options;
    const secret = `fpj_${randomBytes(32).toString('base64url')}`;
    const createdAt = this.isoNow();
    const record: JoinTokenRecord = {
      id: newId('jt'),
      description: request.description ?? null,
      createdBy: actor,
      createdAt,
      expiresAt: new Date(this.clock.now() + request.expiresInSeconds * 1000).toISOString(),
      maxUses: request.uses,
      uses: 0,
      labels: request.labels,
      hostId: request.hostId ?? null,
      replace: request.replace,
      revokedAt: null,
    };
    await store.transaction(async () => {
      await store.joinTokens.insert({ ...record, tokenSha256: sha256Hex(secret) });
      await store.appendEvent(
        {
          hostId: record.hostId,
          actor,
          type: 'join_token.created',
          data: {
            joinTokenId: record.id,
            uses: record.maxUses,
            expiresAt: record.expiresAt,
            labels: record.labels,
            replace: record.replace,
          },
        },
        createdAt,
      );
    });
    return { ...this.view(record), token: secret };
  }

  async listJoinTokens(limit: number): Promise<JoinTokenView[]> {
    return (await this.options.store.joinTokens.list(limit)).map((token) => this.view(token));
  }

  async revokeJoinToken(id: string, actor: string): Promise<JoinTokenView> {
    const { store } = this.options;
    const at = this.isoNow();
    const revoked = await store.transaction(async () => {
      if (!(await store.joinTokens.get(id)))
        throw new FleetError(ErrorCode.notFound, `join token ${id} does not exist`);
      if (!(await store.joinTokens.revoke(id, at))) return false;
      await store.appendEvent({ actor, type: 'join_token.revoked', data: { joinTokenId: id } }, at);
      return true;
    });
    const token = (await store.joinTokens.get(id)) as JoinTokenRecord;
    if (!revoked) throw new FleetError(ErrorCode.conflict, `join token ${id} is already revoked`, this.view(token));
    return this.view(token);
  }

  /**
   * The join token behind a bearer secret, unless unknown or revoked; checked before the body is read.
   * A used-up or expired one still gets that far: it may be the repeat of an enrollment it made.
   */
  async knownJoinToken(secret: string): Promise<JoinTokenRecord> {
    const token = await this.options.store.joinTokens.bySecretHash(sha256Hex(secret));
    if (!token) throw new FleetError(ErrorCode.unauthorized, 'unknown join token');
    if (token.revokedAt !== null) throw new FleetError(ErrorCode.unauthorized, `join token ${token.id} is revoked`);
    return token;
  }

  /** Throws unless the join token can still enroll someone. */
  private checkUsable(token: JoinTokenRecord): void {
    const state = joinTokenState(token, this.isoNow());
    if (state !== 'active') throw new FleetError(ErrorCode.unauthorized, `join token ${token.id} is ${state}`);
  }

  async enroll(secret: string, request: EnrollRequest): Promise<EnrollResult & { repeated: boolean }> {
    const { store } = this.options;
    if (
      !(await verifyPayloadOffThread(
        request.publicKey,
        enrollProofPayload(request.hostId, request.publicKey),
        request.proof,
      ))
    ) {
      throw new FleetError(ErrorCode.validationFailed, 'proof does not verify with publicKey', {
        issues: [{ path: 'body.proof', message: 'not a signature of this hostId and publicKey by its key' }],
      });
    }
    const result = await this.enrollments.submit({ secret, request, at: this.isoNow() }).catch(async (err: unknown) => {
      if (!(err instanceof HostEnrolledMeanwhile)) throw err;
      // Enrolled meanwhile with this very key: the same agent's retry, its first try still open when
      // this one read; answered as a repeat. With another key: the host is taken, as for any other.
      if ((await store.agents.publicKeyOf(request.hostId)) !== request.publicKey) throw alreadyEnrolled(request.hostId);
      const agent = await store.agents.get(request.hostId);
      return { refused: false as const, labels: agent?.labels ?? {}, replaced: false, repeated: true };
    });
    if (result.refused) throw alreadyEnrolled(request.hostId);
    // The previous key of a replaced host must not keep a connection open.
    if (result.replaced) this.options.disconnect(request.hostId, 'agent re-enrolled with a new key');
    return { hostId: request.hostId, labels: result.labels, replaced: result.replaced, repeated: result.repeated };
  }

  /** One enrollment's writes, inside the transaction it shares with others of the same turn (see SharedCommit). */
  private async enrollInTransaction({ secret, request, at }: PendingEnrollment): Promise<EnrollOutcome> {
    const { store } = this.options;
    const token = await this.knownJoinToken(secret);
    if (token.hostId !== null && token.hostId !== request.hostId) {
      throw new FleetError(ErrorCode.forbidden, `join token ${token.id} is for host ${token.hostId} only`);
    }
    const existing = await store.agents.get(request.hostId);
    // The same enrollment again, its answer lost on the way (a timeout, a dropped connection): the
    // host already holds this very key, and the proof shows the caller has its private half, so
    // the caller is that agent. Answered as the first time; no use is spent, nothing is written.
    if (existing && (await store.agents.publicKeyOf(request.hostId)) === request.publicKey) {
      return { refused: false as const, labels: existing.labels, replaced: false, repeated: true };
    }
    // As read in this transaction; its use is claimed below by the update itself.
    this.checkUsable(token);
    // A row that never held a key (registered before enrollment existed) may enroll like a new host.
    const replacing = existing !== undefined && (existing.enrolledAt !== null || existing.revokedAt !== null);
    if (replacing && !token.replace) {
      await store.appendEvent(
        {
          hostId: request.hostId,
          actor: `join-token:${token.id}`,
          type: 'agent.enroll_refused',
          data: { joinTokenId: token.id, reason: 'already enrolled' },
        },
        at,
      );
      return { refused: true as const, tokenId: token.id };
    }
    // The claim decides, not the read above: on PostgreSQL another coordinator of the group may have
    // taken the last use, or revoked the token, since this transaction read it (the two are not
    // serialized), and then the claim changes nothing. Thrown, this enrollment's writes roll back.
    if (!(await store.joinTokens.use(token.id, at))) {
      const now = await store.joinTokens.get(token.id);
      const state = now ? joinTokenState(now, at) : 'revoked';
      throw new FleetError(
        ErrorCode.unauthorized,
        `join token ${token.id} is ${state === 'active' ? 'used_up' : state}`,
      );
    }
    // The same for the host: enrolled by another coordinator since it was read, it is not taken over
    // (unless the token may replace); the use just claimed goes back with the rollback.
    const key = {
      id: request.hostId,
      publicKey: request.publicKey,
      labels: token.labels,
      mayReplace: token.replace,
    };
    if (!(await store.agents.enroll(key, at))) throw new HostEnrolledMeanwhile();
    await store.appendEvent(
      {
        hostId: request.hostId,
        actor: `join-token:${token.id}`,
        type: replacing ? 'agent.reenrolled' : 'agent.enrolled',
        data: { joinTokenId: token.id, createdBy: token.createdBy, labels: token.labels },
      },
      at,
    );
    return { refused: false as const, labels: token.labels, replaced: replacing, repeated: false };
  }

  /** The agent's key stops working at once and its connection is cut; its history stays. */
  async revokeAgent(id: string, actor: string): Promise<void> {
    const { store } = this.options;
    const at = this.isoNow();
    await store.transaction(async () => {
      const agent = await store.agents.get(id);
      if (!agent) throw new FleetError(ErrorCode.notFound, `agent ${id} is not known`);
      // Checked by the update too: another coordinator's revoke may have committed since the read.
      if (agent.revokedAt !== null || !(await store.agents.revoke(id, at)))
        throw new FleetError(ErrorCode.conflict, `agent ${id} is already revoked`);
      await store.appendEvent({ hostId: id, actor, type: 'agent.revoked' }, at);
    });
    this.options.disconnect(id, 'agent credential revoked');
  }

  /**
   * Takes a host out of the fleet: its credential is revoked (it can no longer connect, and enrolling
   * it again needs a join token made for it with `replace`), its connection is cut, no target selects
   * it any more, and the agents list leaves it out; its rollouts and events stay. Refused (409) while
   * the host has work in a running or paused rollout — an order out, or one still to come — unless
   * `force`: then that host times out or misses its delivery deadline like any host gone for good.
   */
  async removeAgent(id: string, actor: string, force: boolean): Promise<void> {
    const at = this.isoNow();
    // As an engine step: on PostgreSQL, a start at another coordinator could otherwise take the host
    // into a rollout after this read found it in none, and the removal would cut a host the rollout waits for.
    const exclusive = this.options.exclusive ?? ((work) => work());
    await exclusive(() => this.removeAgentNow(id, actor, force, at));
    this.options.disconnect(id, 'agent removed from the fleet');
  }

  private async removeAgentNow(id: string, actor: string, force: boolean, at: string): Promise<void> {
    const { store } = this.options;
    await store.transaction(async () => {
      const agent = await store.agents.get(id);
      if (!agent) throw new FleetError(ErrorCode.notFound, `agent ${id} is not known`);
      if (agent.removedAt !== null) throw new FleetError(ErrorCode.conflict, `agent ${id} is already removed`);
      const runs = await store.hostRuns.forHostInStates(id, [...IN_FLIGHT_HOST_STATES, 'queued', 'reverting']);
      const active: string[] = [];
      for (const rolloutId of new Set(runs.map((run) => run.rolloutId))) {
        const state = (await store.rollouts.get(rolloutId))?.state;
        if (state === 'running' || state === 'paused' || state === 'reverting') active.push(rolloutId);
      }
      if (active.length > 0 && !force) {
        throw new FleetError(
          ErrorCode.conflict,
          `agent ${id} has work in active rollout(s) ${active.join(', ')}: let them finish, or remove it with force`,
          { rollouts: active },
        );
      }
      await store.agents.revoke(id, at); // false when it was revoked already: nothing to do then
      // Checked by the update too: another coordinator's removal may have committed since the read.
      if (!(await store.agents.remove(id, at)))
        throw new FleetError(ErrorCode.conflict, `agent ${id} is already removed`);
      // What it had installed is no longer the fleet's: compliance and the package counts leave it out.
      await store.inventory.forget(id);
      await store.appendEvent(
        {
          hostId: id,
          actor,
          type: 'agent.removed',
          data: { ...(force ? { forced: true } : {}), ...(active.length > 0 ? { activeRollouts: active } : {}) },
        },
        at,
      );
    });
  }

  private view(token: JoinTokenRecord): JoinTokenView {
    return { ...token, state: joinTokenState(token, this.isoNow()) };
  }

  private isoNow(): string {
    return isoAt(this.clock);
  }
}

/** The host was enrolled by another coordinator since this enrollment read it: rolls it back. */
class HostEnrolledMeanwhile extends Error {}

function alreadyEnrolled(hostId: string): FleetError {
  return new FleetError(
    ErrorCode.conflict,
    `host ${hostId} is already enrolled: re-enrolling it needs a join token created for it with replace`,
  );
}
