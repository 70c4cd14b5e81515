import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform } from '@fastify/type-provider-zod';
import fp from 'fastify-plugin';
import type { ZodType } from 'zod';
import { ROLES, type Role } from '../config.js';
import { mayDo, type Permission } from './api-auth.js';
import type { RouteAccess } from './route-access.js';

/** Where the document is served. Public, like /healthz: it describes the API and holds no data. */
export const OPENAPI_PATH = '/v1/openapi.json';
/** Swagger UI over the same document, served from the package (no CDN). */
export const DOCS_PATH = '/docs';

/** The groups of operations, in the order the document and Swagger UI list them. */
const TAGS = {
  rollouts:
    'Plan, approve, run, pause, abort and revert rollouts. Waves are numbered from 1 wherever a person reads them.',
  patches: 'The change to roll out: a file or a package set, with its health checks and revert plan.',
  events: 'The audit trail: every transition and human action, paged or live.',
  agents: 'The servers that run the agent.',
  enrollment: 'Join tokens, and agents enrolling their keys with them.',
  inventory: "The fleet's installed packages and their compliance with fixed versions.",
  caller: 'Who the calling token is and what it may do.',
  group: 'The coordinators sharing one PostgreSQL store, and which drives which rollout.',
  health: 'Is the coordinator up.',
} as const;
export type ApiTag = keyof typeof TAGS;

/** Spread into a route's `schema`: every operation is named, summed up and grouped. */
export function operation(tag: ApiTag, operationId: string, summary: string) {
  return { operationId, summary, tags: [tag] };
}

/** The roles that hold a permission, least privileged first. */
function rolesWith(permission: Permission): Role[] {
  return ROLES.filter((role) => mayDo({ name: '', role }, permission));
}

/** What the document says about who may call an operation; derived from `config.access`, never written twice. */
function accessDocumentation(access: RouteAccess | undefined): Record<string, unknown> {
  if (access === 'public' || access === undefined) {
    return { security: [], 'x-required-role': [], description: 'Public: no credential needed.' };
  }
  if (access === 'self-authenticating') {
    return {
      security: [],
      'x-required-role': [],
      description: 'No API token: the request carries a credential of its own (a join token as its bearer token).',
    };
  }
  const roles = rolesWith(access);
  return {
    security: [{ bearer: [] }],
    'x-required-role': roles,
    description: `Requires an API token with the role ${roles.join(' or ')} (permission \`${access}\`).`,
  };
}

/** A zod body that accepts no body at all: the verbs (`curl -X POST` sends none). */
function bodyIsOptional(body: unknown): boolean {
  return (
    typeof (body as ZodType | undefined)?.safeParse === 'function' && (body as ZodType).safeParse(undefined).success
  );
}

/**
 * Per route: zod schemas to JSON Schema (the type provider's transform), then what the route's
 * declarations say — its access as `security`, `x-required-role` and a line of description, a body
 * marked optional when the schema accepts none, and an event stream as `text/event-stream`.
 */
function transform(input: Parameters<typeof jsonSchemaTransform>[0]) {
  const declared = input.schema as Record<string, unknown>;
  const { schema, url } = jsonSchemaTransform(input) as {
    schema: Record<string, unknown> & { hide?: boolean; response?: Record<string, unknown> };
    url: string;
  };
  if (schema.hide) return { schema, url };
  const access = accessDocumentation(input.route.config?.access);
  const own = typeof schema.description === 'string' ? `${schema.description}\n\n` : '';
  const documented: Record<string, unknown> = {
    ...schema,
    ...access,
    description: `${own}${access.description as string}`,
  };
  if (bodyIsOptional(declared.body)) documented['x-optional-body'] = true;
  const produces = declared.produces as readonly string[] | undefined;
  if (produces?.includes('text/event-stream') && schema.response) {
    // The stream's answer is text/event-stream; its errors (before the stream opens) are JSON.
    const response: Record<string, unknown> = {};
    for (const [status, body] of Object.entries(schema.response)) {
      const mediaType = status.startsWith('2') ? 'text/event-stream' : 'application/json';
      const description = (body as { description?: string }).description ?? 'Error';
      response[status] = { description, content: { [mediaType]: { schema: body } } };
    }
    documented.response = response;
    delete documented.produces;
  }
  return { schema: documented, url };
}

interface OpenApiOperation {
  requestBody?: { required?: boolean };
  'x-optional-body'?: boolean;
}

/** @fastify/swagger marks every request body required; a verb that takes none says so. */
function transformObject({ openapiObject }: { openapiObject: Record<string, unknown> }) {
  const paths = (openapiObject.paths ?? {}) as Record<string, Record<string, OpenApiOperation>>;
  for (const methods of Object.values(paths)) {
    for (const op of Object.values(methods)) {
      if (op['x-optional-body'] && op.requestBody) op.requestBody.required = false;
      delete op['x-optional-body'];
    }
  }
  return openapiObject;
}

/**
 * The OpenAPI document of the HTTP API, generated from the zod schemas the routes declare — the same
 * ones that validate requests and check answers, so the document cannot drift from the code — and
 * Swagger UI over it at /docs. Register it before the routes: swagger collects each route as it is added.
 */
export const openApiDocument = fp(
  async (app) => {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'fleetpatch coordinator',
          description:
            'Roll one change out to many servers in waves, safely, and take it back in one step.\n\n' +
            'Every operation names the roles that may call it (`x-required-role`, and in its description). ' +
            'Waves are numbered from 1 wherever a person reads them.',
          version: '1',
          license: { name: 'Apache-2.0', identifier: 'Apache-2.0' },
        },
        servers: [{ url: '/', description: 'The coordinator serving this document' }],
        tags: Object.entries(TAGS).map(([name, description]) => ({ name, description })),
        components: {
          securitySchemes: {
            bearer: { type: 'http', scheme: 'bearer', description: 'An API token from the coordinator configuration.' },
          },
        },
        security: [{ bearer: [] }],
      },
      transform: transform as never,
      transformObject: transformObject as never,
    });
    app.get(OPENAPI_PATH, { config: { access: 'public' }, schema: { hide: true } }, async () => app.swagger());
    await app.register(fastifySwaggerUi, {
      routePrefix: DOCS_PATH,
      uiConfig: { docExpansion: 'list', deepLinking: true },
      // Swagger UI's own assets, from the package: nothing is fetched from a CDN.
      staticCSP: true,
      uiHooks: {},
    });
  },
  { name: 'openapi-document' },
);
