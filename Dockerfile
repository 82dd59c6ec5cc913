# syntax=docker/dockerfile:1
# One image for every envfleet command: `worker` (default), `model-server`, `doctor`, `demo`, ...
# The build stage compiles the TypeScript sources to dist/; the runtime stage has only the build,
# the production dependencies and the fixtures.
#
#   docker build -t envfleet .
#   docker run --rm -e REDIS_URL=redis://host:6379 -e OPENAI_BASE_URL=... -e OPENAI_API_KEY=... envfleet
#   docker run --rm envfleet doctor
FROM node:20-bookworm-slim AS build
ENV NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false
WORKDIR /app
COPY package.json package-lock.json ./
# The build runs through the prepare script, after the sources are in: skip it here.
RUN npm ci --no-audit --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY config ./config
COPY src ./src
COPY queues ./queues
COPY workers ./workers
COPY http ./http
COPY cli ./cli
RUN npm run build

FROM node:20-bookworm-slim
ENV NODE_ENV=production NPM_CONFIG_UPDATE_NOTIFIER=false NPM_CONFIG_FUND=false
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; the build comes from the first stage, so no prepare script here.
RUN npm ci --omit=dev --no-audit --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY fixtures ./fixtures

# Run as the image's unprivileged `node` user (uid 1000). It may create files in /app (run
# outputs, the demo's scratch directory) but cannot change the code.
RUN chown node:node /app
USER node

ENTRYPOINT ["node", "bin/envfleet.js"]
CMD ["worker"]
