# syntax=docker/dockerfile:1
# Build: compile the TypeScript (server and helper scripts) with the dev dependencies.
# The official node:24 image brings Node 24 itself, so the `node` npm package (a dev dependency) is not needed here.
FROM node:24-slim AS build
WORKDIR /app
ENV MONGOMS_DISABLE_POSTINSTALL=1
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY models ./models
COPY bots ./bots
COPY webhooks ./webhooks
COPY scripts ./scripts
RUN npm run build

# Run: production dependencies and the compiled JavaScript only, as the unprivileged `node` user.
# Helper commands run compiled too: `node dist/scripts/generate-jwks.js`, `node dist/scripts/telegram-webhook.js`.
FROM node:24-slim AS runtime
WORKDIR /app
ENV NODE_ENV=production PORT=3000 HOST=0.0.0.0
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The start-up error for a missing variable points at .env.example; it lists every variable with its default.
COPY .env.example ./
# Development keys and the pepper land in DATA_DIR when no secrets are given (compose mounts a volume here).
RUN mkdir -p /app/.data && chown node:node /app/.data
# The image's `node` user, by number so that Kubernetes' runAsNonRoot can tell it is not root.
USER 1000:1000
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# The same V8 flags as `npm start` (package.json): no allocation-site pretenuring (slow logins taught V8 to allocate the
# objects every request shares straight into the old generation, and cheap requests then paid for it), young
# generation capped at 16 MiB per semi-space, and a 512 MiB heap ceiling, which makes V8 collect before the old
# generation grows far past the live data, so the process stays under 250 MiB under load (README, Performance).
CMD ["node", "--no-allocation-site-pretenuring", "--max-semi-space-size=16", "--max-old-space-size=512", "dist/src/server.js"]
