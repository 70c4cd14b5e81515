# One image for both programs: `fleetpatch-coordinator` (default) and `fleetpatch-agent`.
FROM node:20-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.base.json tsconfig.json ./
COPY packages ./packages
COPY scripts ./scripts
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

FROM node:20-bookworm-slim
WORKDIR /app
COPY --from=build /app /app
ENV NODE_ENV=production
# The compose agents' allowed root (--allow-root /etc/demo-app): an agent never creates a patch's parent
# directory, so it is made here, root's and not writable by others, as the file driver requires.
RUN install -d -o root -g root -m 0755 /etc/demo-app
EXPOSE 7420
CMD ["node", "packages/coordinator/dist/bin/fleetpatch-coordinator.js"]
