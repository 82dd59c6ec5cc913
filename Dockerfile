# syntax=docker/dockerfile:1
# One image for every envfleet command: `worker` (default), `model-server`, `doctor`, `demo`.
# envfleet runs from its TypeScript sources through tsx (a runtime dependency): no build step.
#
#   docker build -t envfleet .
#   docker run --rm -e REDIS_URL=redis://host:6379 -e OPENAI_BASE_URL=... -e OPENAI_API_KEY=... envfleet
#   docker run --rm envfleet doctor
FROM node:20-bookworm-slim

ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false

WORKDIR /app

# Dependencies first, so that changing a source file does not reinstall them.
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit \
    && npm cache clean --force

# Sources (read-only for the runtime user), the demo fixtures the scripted model server answers
# from, and tsconfig.json, which tsx reads to transpile the sources the way `tsc` checks them.
COPY tsconfig.json ./
COPY bin ./bin
COPY config ./config
COPY src ./src
COPY queues ./queues
COPY workers ./workers
COPY fixtures ./fixtures

# Run as the image's unprivileged `node` user (uid 1000). It may create files in /app (run
# outputs, the demo's scratch directory) but cannot change the code.
RUN chown node:node /app
USER node

ENTRYPOINT ["node", "bin/envfleet.js"]
CMD ["worker"]
