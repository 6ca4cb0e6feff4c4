# syntax=docker/dockerfile:1
#
# parachute in a container: one self-contained binary on a slim Debian base,
# running as a non-root user.
#
#   docker build -t parachute .          (or: make docker)
#   docker run -d --name parachute -p 80:80 -p 443:443 -v parachute-state:/var/lib/parachute parachute
#   docker exec parachute parachute deploy web --target web-1:3000
#
# Needs BuildKit (the default builder since Docker 23) for RUN --mount.

# ---------------------------------------------------------------------------
# Build stage: exactly what `make` runs on a developer machine and in CI.
# The oven/bun images ship the x64 "baseline" Bun build on amd64 (no AVX2
# needed) and aarch64 on arm64, so the compiled binary follows the builder's
# architecture and runs on any x86-64 or arm64 CPU.
FROM oven/bun:1.4.5 AS build

# make, so the image builds through the Makefile instead of a copy of its
# commands (the Makefile stays the single source of truth for the build).
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, in their own layer, so editing src/ does not re-download
# them. This is the Makefile's `install` recipe (bun install --frozen-lockfile:
# the lockfile must match package.json or the build fails).
COPY package.json bun.lock bunfig.toml ./
RUN bun install --frozen-lockfile

# `make build` = the Makefile's dist/parachute rule:
#   bun build --compile --production --no-compile-autoload-dotenv \
#     --no-compile-autoload-bunfig src/main.ts --outfile dist/parachute
# (its `install` prerequisite re-runs `bun install --frozen-lockfile`, a no-op
# here: node_modules is already complete).
COPY Makefile tsconfig.json ./
COPY src ./src
RUN make build && ./dist/parachute --version

# ---------------------------------------------------------------------------
# Runtime stage: glibc (the binary is dynamically linked against glibc >= 2.17
# only), CA certificates for ACME, and nothing else.
FROM debian:bookworm-slim AS runtime

# Ports 80 and 443 as a non-root user
# -----------------------------------
# Unprivileged processes may not bind ports below 1024 unless the kernel's
# net.ipv4.ip_unprivileged_port_start allows it. Docker (20.10+) sets that
# sysctl to 0 inside a container's own network namespace, but Kubernetes
# (with older runtimes), Podman and `--network host` do not. So the binary
# carries the file capability cap_net_bind_service (setcap, from libcap2-bin):
# whoever executes it may bind low ports, and nothing else. That works with
# every runtime whose default capability set includes NET_BIND_SERVICE
# (Docker, Podman, Kubernetes).
#
#   - Hardened deployments that drop capabilities must keep this one:
#       cap_drop: [ALL]
#       cap_add: [NET_BIND_SERVICE]
#     Without it in the bounding set the kernel refuses to execute a binary
#     with a file capability at all ("exec ... operation not permitted").
#   - Alternatively, listen on unprivileged ports and publish them:
#       docker run -e HTTP_PORT=8080 -e HTTPS_PORT=8443 -p 80:8080 -p 443:8443 ...
#
# The capability is set in the same RUN that installs the binary (through a
# bind mount of the build stage): COPY --from does not reliably preserve file
# capabilities (the security.capability xattr), and a setcap in a later layer
# would store the 100 MB binary twice.
RUN --mount=type=bind,from=build,source=/src/dist/parachute,target=/tmp/parachute \
    apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libcap2-bin \
    && install -m 0755 /tmp/parachute /usr/local/bin/parachute \
    && setcap cap_net_bind_service=+ep /usr/local/bin/parachute \
    && getcap /usr/local/bin/parachute | grep -q cap_net_bind_service \
    && apt-get purge -y --auto-remove libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && parachute --version

# The user, the state directory (a volume: services, targets and certificates
# survive restarts and upgrades) and the admin socket's directory. Both
# directories are 0700: only the parachute user reaches the state and the
# socket. The volume starts out with this ownership when Docker creates it.
RUN groupadd --gid 10001 parachute \
    && useradd --uid 10001 --gid parachute --no-log-init --create-home --home-dir /home/parachute --shell /usr/sbin/nologin parachute \
    && install -d -m 0700 -o parachute -g parachute /var/lib/parachute /run/parachute

# Every option of `parachute run` can come from the environment (SPEC §2);
# override any of these with `docker run -e` or compose `environment:`.
# PARACHUTE_SOCKET is read by the server *and* by every client command, so
# `docker exec <container> parachute deploy …` (which runs as the same user
# with the same environment) finds the server without --socket.
ENV HTTP_PORT=80 \
    HTTPS_PORT=443 \
    STATE_DIR=/var/lib/parachute \
    PARACHUTE_SOCKET=/run/parachute/parachute.sock

USER parachute:parachute
WORKDIR /home/parachute
VOLUME ["/var/lib/parachute"]
EXPOSE 80 443

# SIGTERM (docker stop) makes parachute stop accepting and finish in-flight
# requests for up to 10 s; give it a longer stop timeout than Docker's 10 s
# default (compose: stop_grace_period: 15s; docker run: --stop-timeout 15).
STOPSIGNAL SIGTERM
CMD ["parachute", "run"]
