import type {
  AgentDetail,
  AgentList,
  AgentView,
  ApproveRequest,
  AttachStatementRequest,
  ChangeRecordView,
  ComplianceQuery,
  ComplianceReport,
  EventPage,
  HostPackages,
  HostRunState,
  JoinTokenCreated,
  JoinTokenList,
  JoinTokenRequestInput,
  JoinTokenView,
  PackagesQuery,
  PackageVersions,
  Patch,
  PatchHistory,
  PatchList,
  PreflightResult,
  RevertSignatureRequest,
  RolloutHostPage,
  RolloutList,
  RolloutPlan,
  RolloutStatus,
  RolloutSummary,
} from '@fleetpatch/shared';
import type { Agent, fetch as undiciFetch } from 'undici';
import { ApiError, ConnectionError, type FieldIssue } from './cli-errors.js';
import type { Connection } from './connection.js';

export type RolloutVerb =
  | 'submit'
  | 'approve'
  | 'start'
  | 'pause'
  | 'resume'
  | 'abort'
  | 'retry'
  | 'promote'
  | 'revert';

/** The coordinator's HTTP API under /v1, typed for what the CLI does with it. */
export class ApiClient {
  /**
   * Node 20's global fetch takes no CA; undici's own fetch does, through a dispatcher. Loaded only for
   * a connection with a CA of its own: undici costs ~0.25 s of CPU at every start of the CLI otherwise.
   */
  private withCa: Promise<{ fetch: typeof undiciFetch; dispatcher: Agent }> | undefined;

  constructor(readonly connection: Connection) {}

  listAgents(): Promise<AgentList> {
    return this.request('GET', '/v1/agents');
  }

  createJoinToken(request: JoinTokenRequestInput): Promise<JoinTokenCreated> {
    return this.request('POST', '/v1/join-tokens', request);
  }

  listJoinTokens(): Promise<JoinTokenList> {
    return this.request('GET', '/v1/join-tokens');
  }

  revokeJoinToken(id: string): Promise<JoinTokenView> {
    return this.request('POST', `/v1/join-tokens/${encodeURIComponent(id)}/revoke`, {});
  }

  agentDetail(id: string): Promise<AgentDetail> {
    return this.request('GET', `/v1/agents/${encodeURIComponent(id)}`);
  }

  /** Takes a host out of the fleet (credential revoked, connection cut, history kept); `force` even mid-rollout. */
  removeAgent(id: string, force: boolean): Promise<AgentView> {
    return this.request('DELETE', `/v1/agents/${encodeURIComponent(id)}${force ? '?force=true' : ''}`);
  }

  revokeAgent(id: string): Promise<AgentView> {
    return this.request('POST', `/v1/agents/${encodeURIComponent(id)}/revoke`, {});
  }

  /** Installed versions of a binary package (`name`) or of a source's binaries (`source`), with host counts. */
  packageVersions(query: PackagesQuery): Promise<PackageVersions> {
    return this.request('GET', `/v1/packages?${new URLSearchParams(query as Record<string, string>)}`);
  }

  hostPackages(id: string): Promise<HostPackages> {
    return this.request('GET', `/v1/hosts/${encodeURIComponent(id)}/packages`);
  }

  compliance(query: ComplianceQuery): Promise<ComplianceReport> {
    return this.request('GET', `/v1/compliance?${new URLSearchParams(query as Record<string, string>)}`);
  }

  auditEvents(after: number, limit: number): Promise<EventPage> {
    return this.request('GET', `/v1/events?after=${after}&limit=${limit}`);
  }

  createPatch(spec: unknown): Promise<Patch> {
    return this.request('POST', '/v1/patches', spec);
  }

  getPatch(id: string): Promise<Patch> {
    return this.request('GET', `/v1/patches/${encodeURIComponent(id)}`);
  }

  /** The path of the patch's content through the environments. */
  patchHistory(id: string): Promise<PatchHistory> {
    return this.request('GET', `/v1/patches/${encodeURIComponent(id)}/history`);
  }

  /** The patch's change request, with the evidence and rollback triggers the coordinator fills in. */
  patchRecord(id: string): Promise<ChangeRecordView> {
    return this.request('GET', `/v1/patches/${encodeURIComponent(id)}/record`);
  }

  listPatches(limit: number): Promise<PatchList> {
    return this.request('GET', `/v1/patches?limit=${limit}`);
  }

  createRollout(request: unknown): Promise<RolloutStatus> {
    return this.request('POST', '/v1/rollouts', request);
  }

  listRollouts(limit: number): Promise<RolloutList> {
    return this.request('GET', `/v1/rollouts?limit=${limit}`);
  }

  rolloutStatus(id: string, signal?: AbortSignal): Promise<RolloutStatus> {
    return this.request('GET', `/v1/rollouts/${encodeURIComponent(id)}`, undefined, signal);
  }

  rolloutSummary(id: string, signal?: AbortSignal): Promise<RolloutSummary> {
    return this.request('GET', `/v1/rollouts/${encodeURIComponent(id)}/summary`, undefined, signal);
  }

  /** One page of a rollout's hosts by wave and position; `wave` is 0-based, as the API counts. */
  rolloutHosts(
    id: string,
    query: { state?: HostRunState | undefined; wave?: number | undefined; limit: number; cursor?: string | undefined },
  ): Promise<RolloutHostPage> {
    const params = new URLSearchParams({ limit: String(query.limit) });
    if (query.state !== undefined) params.set('state', query.state);
    if (query.wave !== undefined) params.set('wave', String(query.wave));
    if (query.cursor !== undefined) params.set('cursor', query.cursor);
    return this.request('GET', `/v1/rollouts/${encodeURIComponent(id)}/hosts?${params}`);
  }

  rolloutPlan(id: string): Promise<RolloutPlan> {
    return this.request('GET', `/v1/rollouts/${encodeURIComponent(id)}/plan`);
  }

  rolloutVerb(id: string, verb: RolloutVerb, reason?: string): Promise<RolloutStatus> {
    return this.request('POST', `/v1/rollouts/${encodeURIComponent(id)}/${verb}`, reason ? { reason } : {});
  }

  /** A verb answered with the rollout's summary (`?view=summary`): ~1 KB, where its status is ~2 MB at 10,000 hosts. */
  rolloutVerbSummary(id: string, verb: RolloutVerb, reason?: string): Promise<RolloutSummary> {
    return this.request(
      'POST',
      `/v1/rollouts/${encodeURIComponent(id)}/${verb}?view=summary`,
      reason ? { reason } : {},
    );
  }

  /** Start although an earlier environment was not passed: admins only, with a reason for the record. */
  startOverridingPromotion(id: string, reason: string): Promise<RolloutStatus> {
    return this.request('POST', `/v1/rollouts/${encodeURIComponent(id)}/start`, { overridePromotion: { reason } });
  }

  /** A signed rollout's approval: the approver's signature of its statement. */
  approveSigned(id: string, body: ApproveRequest): Promise<RolloutStatus> {
    return this.request('POST', `/v1/rollouts/${encodeURIComponent(id)}/approve`, body);
  }

  /** The author's signed apply statement, attached to their draft. */
  attachStatement(id: string, body: AttachStatementRequest): Promise<RolloutStatus> {
    return this.request('POST', `/v1/rollouts/${encodeURIComponent(id)}/statement`, body);
  }

  /** A signature on a signed rollout's revert statement (the last one needed starts the revert). */
  signRevert(id: string, body: RevertSignatureRequest): Promise<RolloutStatus> {
    return this.request('POST', `/v1/rollouts/${encodeURIComponent(id)}/revert-statement`, body);
  }

  revertHost(id: string, hostId: string): Promise<RolloutStatus> {
    return this.request(
      'POST',
      `/v1/rollouts/${encodeURIComponent(id)}/hosts/${encodeURIComponent(hostId)}/revert`,
      {},
    );
  }

  /** One host's revert answered with the rollout's summary (`?view=summary`). */
  revertHostSummary(id: string, hostId: string): Promise<RolloutSummary> {
    return this.request(
      'POST',
      `/v1/rollouts/${encodeURIComponent(id)}/hosts/${encodeURIComponent(hostId)}/revert?view=summary`,
      {},
    );
  }

  preflight(id: string, timeoutSeconds: number): Promise<PreflightResult> {
    return this.request('POST', `/v1/rollouts/${encodeURIComponent(id)}/preflight`, { timeoutSeconds });
  }

  rolloutEvents(id: string, after: number, limit: number): Promise<EventPage> {
    return this.request('GET', `/v1/rollouts/${encodeURIComponent(id)}/events?after=${after}&limit=${limit}`);
  }

  /**
   * Opens the rollout's SSE stream; the caller reads `body` (see sse-reader.ts). `coalesced`: a
   * `hosts.changed` notice a few times a second instead of every host's events and phases.
   */
  async openEventStream(
    id: string,
    lastEventId: number,
    signal: AbortSignal,
    hostEvents: 'all' | 'coalesced' = 'all',
  ): Promise<ReadableStream<Uint8Array>> {
    // `all` is the coordinator's default: not asked for, so a coordinator from before the option reads the same URL.
    const query = hostEvents === 'all' ? '' : `?hostEvents=${hostEvents}`;
    const res = await this.fetch(`/v1/rollouts/${encodeURIComponent(id)}/events/stream${query}`, {
      method: 'GET',
      headers: {
        authorization: `Bearer ${this.connection.token}`,
        accept: 'text/event-stream',
        ...(lastEventId > 0 ? { 'last-event-id': String(lastEventId) } : {}),
      },
      signal,
    });
    if (!res.ok) throw await toApiError(res);
    if (!res.body) throw new ConnectionError('the coordinator closed the event stream before it started');
    return res.body;
  }

  private async request<T>(
    method: RequestOptions['method'],
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> {
    const res = await this.fetch(path, {
      ...(signal ? { signal } : {}),
      method,
      headers: {
        authorization: `Bearer ${this.connection.token}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    if (!res.ok) throw await toApiError(res);
    let text: string;
    try {
      text = await res.text();
    } catch (err) {
      // The body cut off (a coordinator restarting while it sent a status of megabytes): as unreachable
      // as no answer at all, so a watch rides it out as it rides out a refused connection.
      if (signal?.aborted) throw err;
      throw new ConnectionError(
        `the coordinator at ${this.connection.url} stopped answering ${method} ${path} midway: ${networkReason(err)}`,
      );
    }
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new Error(
        `the answer to ${method} ${path} is not JSON (${res.headers.get('content-type') ?? 'no content type'}): is ${this.connection.url} a fleetpatch coordinator?`,
      );
    }
  }

  private async fetch(path: string, init: RequestOptions): Promise<Response> {
    try {
      const url = `${this.connection.url}${path}`;
      const { ca } = this.connection;
      if (!ca) return await fetch(url, init);
      this.withCa ??= import('undici').then((undici) => ({
        fetch: undici.fetch,
        dispatcher: new undici.Agent({ connect: { ca } }),
      }));
      const { fetch: fetchWithCa, dispatcher } = await this.withCa;
      // The same WHATWG Response and web ReadableStream at run time; undici ships its own typings.
      return (await fetchWithCa(url, { ...init, dispatcher })) as unknown as Response;
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new ConnectionError(`cannot reach the coordinator at ${this.connection.url}: ${networkReason(err)}`);
    }
  }
}

/** What this client sends: a subset both the global and undici's fetch accept. */
interface RequestOptions {
  method: 'GET' | 'POST' | 'DELETE';
  headers: Record<string, string>;
  body?: string;
  signal?: AbortSignal;
}

async function toApiError(res: Response): Promise<ApiError> {
  const text = await res.text().catch(() => '');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  const error = isRecord(parsed) && isRecord(parsed.error) ? parsed.error : undefined;
  const message = typeof error?.message === 'string' ? error.message : `HTTP ${res.status} ${res.statusText}`.trim();
  const code = typeof error?.code === 'string' ? error.code : 'http_error';
  const rawIssues = isRecord(error?.details) && Array.isArray(error.details.issues) ? error.details.issues : [];
  const issues: FieldIssue[] = rawIssues.filter(isRecord).map((i) => ({
    path: typeof i.path === 'string' && i.path ? i.path : '(root)',
    message: typeof i.message === 'string' ? i.message : 'invalid',
  }));
  return new ApiError(res.status, code, message, issues);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** "connection refused (ECONNREFUSED)" rather than undici's bare "fetch failed". */
function networkReason(err: unknown): string {
  const cause = err instanceof Error && isRecord(err.cause) ? err.cause : undefined;
  const code = typeof cause?.code === 'string' ? cause.code : undefined;
  const known: Record<string, string> = {
    ECONNREFUSED: 'connection refused',
    ENOTFOUND: 'host not found',
    ECONNRESET: 'connection reset',
    ETIMEDOUT: 'timed out',
    EHOSTUNREACH: 'host unreachable',
    CERT_HAS_EXPIRED: 'certificate expired',
    ERR_TLS_CERT_ALTNAME_INVALID: 'certificate is for another host name',
    UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'certificate not trusted (pass --ca-file)',
    SELF_SIGNED_CERT_IN_CHAIN: 'certificate not trusted (pass --ca-file)',
    DEPTH_ZERO_SELF_SIGNED_CERT: 'certificate not trusted (pass --ca-file)',
  };
  if (code) return `${known[code] ?? 'network error'} (${code})`;
  if (cause && typeof cause.message === 'string') return cause.message;
  return err instanceof Error ? err.message : String(err);
}
