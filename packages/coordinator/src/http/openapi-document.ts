import fastifySwagger from '@fastify/swagger';
import { jsonSchemaTransform } from '@fastify/type-provider-zod';
import fp from 'fastify-plugin';

/** Where the document is served. Public, like /healthz: it describes the API and holds no data. */
export const OPENAPI_PATH = '/v1/openapi.json';

/**
 * The OpenAPI document of the HTTP API, generated from the zod schemas the routes declare — the same
 * ones that validate requests and check answers, so the document cannot drift from the code.
 * Register it before the routes: swagger collects each route as it is added.
 */
export const openApiDocument = fp(
  async (app) => {
    await app.register(fastifySwagger, {
      openapi: {
        openapi: '3.1.0',
        info: {
          title: 'fleetpatch coordinator',
          description: 'Roll one change out to many servers in waves, safely, and take it back in one step.',
          version: '1',
        },
        components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
        security: [{ bearer: [] }],
      },
      transform: jsonSchemaTransform,
    });
    app.get(OPENAPI_PATH, { config: { access: 'public' }, schema: { hide: true } }, async () => app.swagger());
  },
  { name: 'openapi-document' },
);
