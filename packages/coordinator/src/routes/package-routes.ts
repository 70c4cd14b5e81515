import type { FastifyPluginAsyncZod } from '@fastify/type-provider-zod';
import {
  ComplianceQuerySchema,
  ComplianceReportSchema,
  HostIdSchema,
  HostPackagesSchema,
  PackagesQuerySchema,
  PackageVersionsSchema,
} from '@fleetpatch/shared';
import { z } from 'zod';
import { ERROR_RESPONSES } from '../http/error-handler.js';
import { operation } from '../http/openapi-document.js';

/** The fleet's package inventory: versions by package or source, one host's packages, and compliance with a fix. */
export const packageRoutes: FastifyPluginAsyncZod = async (app) => {
  const { inventory } = app.fleet;

  app.get(
    '/packages',
    {
      config: { access: 'read' },
      schema: {
        ...operation('inventory', 'listPackageVersions', 'Installed versions of a package across the fleet'),
        querystring: PackagesQuerySchema,
        response: { 200: PackageVersionsSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await inventory.versions(request.query),
  );

  app.get(
    '/hosts/:id/packages',
    {
      config: { access: 'read' },
      schema: {
        ...operation('inventory', 'getHostPackages', "One host's installed packages"),

        params: z.object({ id: HostIdSchema }),
        response: { 200: HostPackagesSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await inventory.hostPackages(request.params.id),
  );

  app.get(
    '/compliance',
    {
      config: { access: 'read' },
      schema: {
        ...operation('inventory', 'getCompliance', 'Which hosts are below a fixed version'),
        querystring: ComplianceQuerySchema,
        response: { 200: ComplianceReportSchema, ...ERROR_RESPONSES },
      },
    },
    async (request) => await inventory.compliance(request.query),
  );
};
