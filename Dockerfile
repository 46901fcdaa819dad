# The kohakku-dr worker image: the worker (scripts/worker, with its memory settings), the CLI,
# and the tools its activities run — pg_dump/pg_restore 15, redis-cli, pgBackRest — plus the
# docker CLI with its compose plugin for SERVICE_ADAPTER=compose. Built and run by
# docker-compose.yml; validated by the test suite (test/compose.test.ts).
FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM docker:27-cli AS docker-cli

FROM node:20-bookworm-slim
RUN apt-get update \
  && apt-get install -y --no-install-recommends postgresql-client-15 redis-tools pgbackrest ca-certificates \
  && rm -rf /var/lib/apt/lists/*
COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=docker-cli /usr/local/libexec/docker/cli-plugins/docker-compose /usr/local/libexec/docker/cli-plugins/docker-compose
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY scripts/worker scripts/node-memory.sh ./scripts/
ENV PG_BIN_DIR=/usr/lib/postgresql/15/bin \
    REDIS_CLI_BIN=/usr/bin/redis-cli \
    KOHAKKU_DR_WORK_DIR=/work
VOLUME ["/work"]
# The CLI beside the worker: docker compose exec worker kohakku-dr status <id>
RUN ln -s /app/dist/client/cli.js /usr/local/bin/kohakku-dr && chmod +x /app/dist/client/cli.js
CMD ["bash", "scripts/worker"]
