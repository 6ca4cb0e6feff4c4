#!/usr/bin/env bash
# What users install is what CI tests: builds Dockerfile, sample/Dockerfile and
# docker-compose.yml exactly as they are, with podman and podman-compose (from
# Debian), and runs end-to-end checks against the running containers. CI
# (.ci/run) runs it after `make test`; by hand: `sudo bash scripts/container-check.sh`.
#
# Docker Hub cannot be reached from the project's machines, so the two base
# images are made here first and kept in podman's storage for later runs:
#   debian:bookworm-slim  debootstrap (minbase) from the Debian mirror apt uses
#   oven/bun:V, V-slim    scripts/container/bun.Containerfile: that base plus
#                         Bun V's official baseline/aarch64 build, from npm
# (V is read from the Dockerfiles.) How this differs from a real Docker host:
# docs/containers.md.
#
# Checks, all traffic to 127.0.0.1 only, every wait bounded and on an event
# (a port answering, a log line), never a fixed sleep:
#   build    the image's binary is the one its build stage compiled (buildah
#            1.28 can reuse a stale cached layer; it is then rebuilt)
#   image    the proxy runs as uid 10001 and binds 80/443 with every capability
#            but NET_BIND_SERVICE dropped; `exec parachute deploy` routes
#   load     a redeploy from one sample container to another, and stopping the
#            old one, under load (scripts/container/load.ts): 0 failed requests
#   drain    `podman stop` while a slow request is in flight: it completes,
#            the container exits 0
#   state    a new container on the same state volume routes the same services
#   compose  build and `up`, a deploy and a redeploy under load by service name,
#            `down` and `up` again: the deployed service is still routed
#
# Needs root (rootful podman) and apt-get for what is missing. Without them it
# skips with a warning, or fails when CI is set (as scripts/test-tools.sh).
# Environment: CONTAINER_CHECK_PORT (default 28180: the single proxy's HTTP
# port on 127.0.0.1), CONTAINER_CHECK_COMPOSE_PORT (28080; HTTPS is +363),
# CONTAINER_CHECK_CACHE (/var/cache/parachute-container-check: Bun's npm
# tarball), MIRROR / SECURITY_MIRROR (Debian mirrors for debootstrap).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HERE=$ROOT/scripts/container
NAME=container-check

unavailable() {
  if [ -n "${CI:-}" ]; then
    echo "$NAME: error: $1" >&2
    exit 1
  fi
  echo "$NAME: warning: $1: the container checks are skipped" >&2
  exit 0
}

if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=CI,CONTAINER_CHECK_PORT,CONTAINER_CHECK_COMPOSE_PORT,CONTAINER_CHECK_CACHE,MIRROR,SECURITY_MIRROR \
      bash "${BASH_SOURCE[0]}" "$@"
  fi
  unavailable "needs root (rootful podman), and neither root nor passwordless sudo is available"
fi

PORT=${CONTAINER_CHECK_PORT:-28180}
COMPOSE_HTTP=${CONTAINER_CHECK_COMPOSE_PORT:-28080}
COMPOSE_HTTPS=$((COMPOSE_HTTP + 363))
CACHE=${CONTAINER_CHECK_CACHE:-/var/cache/parachute-container-check}
export CONTAINERS_CONF=$HERE/containers.conf
# The compose file's `name: parachute`, which podman-compose 1.0.3 ignores.
compose() { (cd "$ROOT" && HTTP_PUBLISH=$COMPOSE_HTTP HTTPS_PUBLISH=$COMPOSE_HTTPS podman-compose -p parachute "$@"); }

# ------------------------------------------------------------------ reporting
passed=0
current=""
began=$SECONDS
step() { current=$1; echo; echo "== $1"; }
ok() { passed=$((passed + 1)); echo "ok: $1"; }
fail() { echo "FAIL: $current: $1" >&2; exit 1; }

# ---------------------------------------------------------------------- tools
need=()
for tool in podman podman-compose debootstrap runc curl flock; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || unavailable "needs ${need[*]} and has no apt-get to install them"
  pkgs=()
  for tool in "${need[@]}"; do
    case $tool in flock) pkgs+=(util-linux) ;; *) pkgs+=("$tool") ;; esac
  done
  echo "$NAME: installing ${pkgs[*]} (and buildah, netavark, aardvark-dns)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${pkgs[@]}" buildah netavark aardvark-dns >/dev/null
fi
command -v bun >/dev/null 2>&1 || fail "bun is needed on the host for the load client (npm install -g bun)"
command -v npm >/dev/null 2>&1 || fail "npm is needed on the host to fetch Bun for the oven/bun stand-in"

# One run at a time on a machine: the compose file fixes container names.
mkdir -p /run/lock
exec 9>/run/lock/parachute-container-check.lock
flock -w 900 9 || fail "another container check still holds /run/lock/parachute-container-check.lock after 15 min"

# ------------------------------------------------------------- clean up always
load_pid=""
cleanup() {
  local status=$?
  set +e
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null
  if [ "$status" != 0 ] && podman container exists pcc-proxy 2>/dev/null; then
    echo "--- last lines of pcc-proxy's log:" >&2
    podman logs --tail 30 pcc-proxy >&2 2>&1
  fi
  if [ "$status" != 0 ] && podman container exists parachute_proxy_1 2>/dev/null; then
    echo "--- last lines of the compose proxy's log:" >&2
    podman logs --tail 30 parachute_proxy_1 >&2 2>&1
  fi
  compose down -v -t 15 >/dev/null 2>&1
  podman rm -f -t 0 pcc-proxy pcc-app-1 pcc-app-2 pcc-slow >/dev/null 2>&1
  podman volume rm -f pcc-state parachute_state >/dev/null 2>&1
  podman network rm -f pcc-net parachute_default >/dev/null 2>&1
  rm -rf "${ctx:-}"
  # Images this run made or replaced that nothing uses any more: a previous
  # build, or a stage the stale-layer rebuild superseded. Only dangling ones
  # (no tag, and no image built on them) go, so the layer cache, whose
  # intermediate images have children, stays whole. Removing one can leave
  # its parent dangling: a few passes.
  if [ -n "${drop_replaced:-}" ] || [ -s "${built_ids:-/nonexistent}" ]; then
    local candidates id dangling pass removed
    candidates=$(for id in ${drop_replaced:+${old_images:-}} $(cat "$built_ids" 2>/dev/null); do
      podman image inspect -f '{{.Id}}' "$id" 2>/dev/null; done | sort -u)
    for pass in 1 2 3 4 5 6; do
      dangling=$(podman images -q --no-trunc --filter dangling=true | sed 's/^sha256://')
      removed=0
      for id in $candidates; do
        if grep -qx "$id" <<<"$dangling" && podman rmi "$id" >/dev/null 2>&1; then removed=1; fi
      done
      [ "$removed" = 1 ] || break
    done
  fi
  rm -f "${built_ids:-}" "${build_log:-}" /tmp/container-check-compose-up.log
  echo
  if [ "$status" = 0 ]; then
    echo "$NAME: $passed passed, 0 failed ($((SECONDS - began)) s)"
  else
    echo "$NAME: $passed passed, 1 failed ($((SECONDS - began)) s; failed at: ${current:-setup})"
  fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------- waits
# wait_for SECONDS WHAT COMMAND...: runs COMMAND until it succeeds, at most SECONDS.
wait_for() {
  local limit=$1 what=$2 end=$((SECONDS + $1))
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || fail "no $what after ${limit}s"
    sleep 0.2
  done
}
answers() { curl -fsS --max-time 5 "$1" | grep -q -- "$2"; }          # URL PATTERN
logged() { podman logs "$1" 2>&1 | grep -q -- "$2"; }                  # CONTAINER PATTERN
running() { [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
# A command in the compose proxy, through `podman-compose exec` as a user
# would; 1.0.3 prints the podman command and "exit code: N" and always exits
# 0 itself, so the status is read back from that line.
compose_exec() {
  local out code
  out=$(compose exec -T proxy "$@" 2>&1) || true
  code=$(printf '%s\n' "$out" | sed -n 's/^exit code: \([0-9]*\)$/\1/p' | tail -1)
  printf '%s\n' "$out" | grep -v -e '^exit code: ' -e '^podman exec ' -e "^\['podman', '--version'" -e '^using podman version: ' || true
  [ "${code:-1}" = 0 ]
}

# ---------------------------------------------------------------- base images
# The versions the project's Dockerfiles ask for.
BUN_VERSION=$(sed -n 's|^FROM oven/bun:\([0-9][0-9.]*\)[ -].*|\1|p; s|^FROM oven/bun:\([0-9][0-9.]*\)$|\1|p' "$ROOT/Dockerfile" | head -1)
SUITE=$(sed -n 's|^FROM debian:\([a-z]*\)-slim.*|\1|p' "$ROOT/Dockerfile" | head -1)
[ -n "$BUN_VERSION" ] && [ -n "$SUITE" ] || fail "cannot read the oven/bun version or the Debian suite from the Dockerfile"
grep -q "^FROM oven/bun:$BUN_VERSION-slim" "$ROOT/sample/Dockerfile" || fail "sample/Dockerfile does not use oven/bun:$BUN_VERSION-slim like the Dockerfile"

step "base images: debian:$SUITE-slim, oven/bun:$BUN_VERSION and oven/bun:$BUN_VERSION-slim"
t0=$SECONDS
# The Debian mirrors this machine's apt uses (one-line and deb822 sources).
apt_uris() {
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
    awk '$1 == "deb" || $1 == "URIs:" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) print $i }'
}
if podman image exists "docker.io/library/debian:$SUITE-slim"; then
  echo "debian:$SUITE-slim: in podman's storage already"
else
  MIRROR=${MIRROR:-$(apt_uris | grep -m1 -E '/debian/?$' || true)}
  SECURITY_MIRROR=${SECURITY_MIRROR:-$(apt_uris | grep -m1 -E '/debian-security/?$' || true)}
  [ -n "$MIRROR" ] || fail "no Debian mirror in the apt sources: set MIRROR"
  SECURITY_MIRROR=${SECURITY_MIRROR:-${MIRROR%/}-security}
  rootfs=$(mktemp -d /var/tmp/container-check-rootfs.XXXXXX)
  echo "debian:$SUITE-slim: debootstrap --variant=minbase $SUITE from $MIRROR"
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >/dev/null || { rm -rf "$rootfs"; fail "debootstrap failed"; }
  # Trimmed and configured like the official slim image (debuerreotype's
  # slimming): no docs, man pages or locales; apt keeps no caches or lists.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/docker-no-languages"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' 'path-exclude /usr/share/man/*' \
    'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' >"$rootfs/etc/dpkg/dpkg.cfg.d/docker"
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
    "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
    "$rootfs"/var/log/apt/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" --numeric-owner -c . |
    podman import --change 'CMD ["bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "docker.io/library/debian:$SUITE-slim" >/dev/null
  rm -rf "$rootfs"
fi

case $(uname -m) in
  x86_64) bun_pkg=@oven/bun-linux-x64-baseline ;;
  aarch64) bun_pkg=@oven/bun-linux-aarch64 ;;
  *) fail "no official Bun build for $(uname -m)" ;;
esac
tarball=$CACHE/$(echo "${bun_pkg#@}" | tr / -)-$BUN_VERSION.tgz
if [ ! -s "$tarball" ]; then
  mkdir -p "$CACHE"
  echo "oven/bun stand-in: npm pack $bun_pkg@$BUN_VERSION"
  (cd "$CACHE" && npm pack --silent "$bun_pkg@$BUN_VERSION" >/dev/null) || fail "npm pack $bun_pkg@$BUN_VERSION failed"
fi
ctx=$(mktemp -d /var/tmp/container-check-bun.XXXXXX)
tar -xzf "$tarball" -C "$ctx" package/bin/bun
mv "$ctx/package/bin/bun" "$ctx/bun" && rm -rf "$ctx/package" && chmod 0755 "$ctx/bun"
[ "$("$ctx/bun" --version)" = "$BUN_VERSION" ] || fail "$tarball holds Bun $("$ctx/bun" --version), not $BUN_VERSION"
install -m 0755 "$HERE/bun-entrypoint.sh" "$ctx/"
cp /etc/ssl/certs/ca-certificates.crt "$ctx/extra-ca.pem"
# Cached by podman's layer cache: instant when nothing changed.
podman build --pull=never -q -t "docker.io/oven/bun:$BUN_VERSION" -f "$HERE/bun.Containerfile" "$ctx" >/dev/null
podman tag "docker.io/oven/bun:$BUN_VERSION" "docker.io/oven/bun:$BUN_VERSION-slim"
rm -rf "$ctx"; ctx=""
ok "base images ready ($((SECONDS - t0)) s)"

# ------------------------------------------------------------- project images
step "project images: Dockerfile and sample/Dockerfile, unchanged"
t0=$SECONDS
# The images this run rebuilds; those it leaves untagged are removed at the end.
old_images=$(for tag in parachute parachute-build-stage parachute-sample parachute_web-1 parachute_web-2 parachute_web-3 parachute_web-4; do
  podman image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true
done | sort -u)
build_log=/tmp/container-check-build.log
built_ids=/tmp/container-check-built-ids
: >"$built_ids"
note_images() { grep -oE '^--> (Using cache )?[0-9a-f]{11,}' "$1" | awk '{ print $NF }' >>"$built_ids" || true; }
build() {  # podman build ARGS...: the log's tail on failure
  podman build --pull=never "$@" >"$build_log" 2>&1 || { tail -30 "$build_log" >&2; note_images "$build_log"; fail "podman build $* failed"; }
  note_images "$build_log"
}
digest() { podman run --rm --entrypoint sha256sum "$1" "$2" | cut -d' ' -f1; }  # IMAGE FILE
build -t parachute "$ROOT"
# buildah 1.28 (Debian 12) reuses a cached `RUN --mount=type=bind,from=build`
# layer even when the build stage it mounts has changed, so an edit of src/
# could leave the previous binary in the image (BuildKit keys that cache on
# the mounted files). The build stage itself is cached correctly (COPY src):
# when its binary is not the image's, the image is built again without cache.
build --target build -t parachute-build-stage "$ROOT"
if [ "$(digest parachute-build-stage /src/dist/parachute)" != "$(digest parachute /usr/local/bin/parachute)" ]; then
  echo "the image holds a stale binary from buildah's layer cache: building it again with --no-cache"
  build --no-cache -t parachute "$ROOT"
  build --target build -t parachute-build-stage "$ROOT"
  [ "$(digest parachute-build-stage /src/dist/parachute)" = "$(digest parachute /usr/local/bin/parachute)" ] ||
    fail "the binary in the parachute image is not the one its build stage made"
fi
build -t parachute-sample "$ROOT/sample"
rm -f "$build_log"
ok "images built ($((SECONDS - t0)) s), the image's binary is its build stage's: parachute $(podman run --rm parachute parachute --version)"

# ------------------------------------------------------------ single containers
# A network of their own: the proxy reaches the sample containers by name, and
# publishes its port 80 on 127.0.0.1 only.
compose down -v -t 1 >/dev/null 2>&1 || true  # what an aborted run may have left
podman rm -f -t 0 pcc-proxy pcc-app-1 pcc-app-2 pcc-slow >/dev/null 2>&1 || true
podman volume rm -f pcc-state parachute_state >/dev/null 2>&1 || true
podman network rm -f pcc-net parachute_default >/dev/null 2>&1 || true
podman network create pcc-net >/dev/null

base=http://127.0.0.1:$PORT
start_proxy() {
  podman run -d --name pcc-proxy --network pcc-net -p "127.0.0.1:$PORT:80" \
    --cap-drop ALL --cap-add NET_BIND_SERVICE -v pcc-state:/var/lib/parachute parachute >/dev/null
  wait_for 30 "\"Server started\" in pcc-proxy's log" logged pcc-proxy '"msg":"Server started"'
  wait_for 15 "HTTP answer on $base" curl -sS --max-time 2 -o /dev/null "$base/"
}

step "image: non-root, least privilege, deploy through exec"
for app in pcc-app-1 pcc-app-2; do
  podman run -d --name "$app" --network pcc-net -e "INSTANCE=$app" parachute-sample >/dev/null
done
podman run -d --name pcc-slow --network pcc-net -v "$HERE/slow-app.ts:/home/bun/app/slow.ts:ro" parachute-sample bun slow.ts >/dev/null
start_proxy
for app in pcc-app-1 pcc-app-2 pcc-slow; do
  wait_for 20 "\"listening\" in $app's log" logged "$app" '"msg":"listening"'
done
pid=$(podman inspect -f '{{.State.Pid}}' pcc-proxy)
[ "$(stat -c %u "/proc/$pid")" = 10001 ] || fail "the proxy's first process runs as uid $(stat -c %u "/proc/$pid"), not 10001"
grep -q 'parachute' "/proc/$pid/cmdline" || fail "the container's first process is $(tr '\0' ' ' <"/proc/$pid/cmdline"), not parachute"
[ "$(podman exec pcc-proxy id -u)" = 10001 ] || fail "podman exec runs as uid $(podman exec pcc-proxy id -u), not 10001"
ok "PID 1 is parachute as uid 10001, on port 80 with only NET_BIND_SERVICE"
podman exec pcc-proxy parachute deploy web --target pcc-app-1:3000
answers "$base/whoami" '"instance":"pcc-app-1"' || fail "$base/whoami is not served by pcc-app-1"
ok "podman exec pcc-proxy parachute deploy web --target pcc-app-1:3000 routes $base to it"

step "load: redeploy to another container, then stop the old one, under load"
bun "$HERE/load.ts" "$base/whoami" 150 \
  pcc-app-1,pcc-app-2 "podman exec pcc-proxy parachute deploy web --target pcc-app-2:3000" \
  pcc-app-2 "podman stop -t 10 pcc-app-1 >/dev/null" ||
  fail "requests failed or went to the old container during the redeploy (see load: lines above)"
ok "redeploy and old container stopped under load: 0 failed requests"

step "drain: podman stop while a slow request is in flight"
podman exec pcc-proxy parachute deploy slow --target pcc-slow:3000 --path-prefix /slow
answers "$base/slow/?ms=0" 'slow done' || fail "$base/slow/ is not served by pcc-slow"
body=$(mktemp)
curl -sS --max-time 30 -o "$body" -w '%{http_code}' "$base/slow/?ms=4000" >"$body.status" 2>"$body.err" &
slow_curl=$!
wait_for 10 "slow request at pcc-slow" logged pcc-slow '"ms":4000'
t0=$SECONDS
podman stop -t 15 pcc-proxy >/dev/null
stop_s=$((SECONDS - t0))
wait "$slow_curl" || true
status=$(cat "$body.status"); answer=$(cat "$body"); err=$(cat "$body.err"); rm -f "$body" "$body.status" "$body.err"
[ "$status" = 200 ] && [ "$answer" = "slow done after 4000 ms" ] ||
  fail "the request in flight got HTTP ${status:-none} '${answer}' ${err}"
code=$(podman inspect -f '{{.State.ExitCode}}' pcc-proxy)
[ "$code" = 0 ] || fail "the proxy container exited $code after podman stop"
logged pcc-proxy '"msg":"Server stopped","graceful":true' || fail "no graceful \"Server stopped\" in the proxy's log"
ok "the slow request completed (200), podman stop took ${stop_s}s, exit code 0"

step "state: a new container on the same volume"
podman rm pcc-proxy >/dev/null
start_proxy
podman exec pcc-proxy parachute list | grep -q 'pcc-app-2:3000' || fail "parachute list in the new container does not show pcc-app-2:3000"
wait_for 20 "pcc-app-2 answering $base/whoami" answers "$base/whoami" '"instance":"pcc-app-2"'
answers "$base/slow/?ms=0" 'slow done' || fail "the slow service is not routed in the new container"
ok "both services routed by the new container, from the volume pcc-state"
podman rm -f -t 0 pcc-proxy pcc-app-1 pcc-app-2 pcc-slow >/dev/null
podman volume rm -f pcc-state >/dev/null
podman network rm -f pcc-net >/dev/null

# -------------------------------------------------------------------- compose
cbase=http://127.0.0.1:$COMPOSE_HTTP
step "compose: build, up, deploy and redeploy by service name under load"
t0=$SECONDS
# Not `up --build`: its build of the proxy would meet buildah's stale
# RUN --mount layer again (measured: it moved the tag back to the previous
# binary). The proxy's image is the `parachute` checked above, the image name
# the compose file gives it; compose builds the four web images itself.
compose build web-1 web-2 web-3 web-4 >/tmp/container-check-compose-up.log 2>&1 || { tail -20 /tmp/container-check-compose-up.log; fail "podman-compose build failed"; }
note_images /tmp/container-check-compose-up.log
compose up -d --no-build >>/tmp/container-check-compose-up.log 2>&1 || { tail -20 /tmp/container-check-compose-up.log; fail "podman-compose up failed"; }
for c in parachute_proxy_1 parachute-web-1 parachute-web-2 parachute-web-3 parachute-web-4; do
  wait_for 20 "running container $c" running "$c"
done
wait_for 30 "\"Server started\" in the compose proxy's log" logged parachute_proxy_1 '"msg":"Server started"'
for i in 1 2 3 4; do
  wait_for 20 "\"listening\" in parachute-web-$i's log" logged "parachute-web-$i" '"msg":"listening"'
done
wait_for 15 "HTTP answer on $cbase" curl -sS --max-time 2 -o /dev/null "$cbase/"
# The compose proxy runs the checked binary.
[ "$(digest "$(podman inspect -f '{{.Image}}' parachute_proxy_1)" /usr/local/bin/parachute)" = "$(digest parachute-build-stage /src/dist/parachute)" ] ||
  fail "the compose proxy runs another binary than the one built from this source"
ok "podman-compose build (web-1 … web-4) and up -d: the proxy and web-1 … web-4 running ($((SECONDS - t0)) s)"
compose_exec parachute deploy web --target web-1:3000 || fail "compose exec proxy parachute deploy web --target web-1:3000 failed"
answers "$cbase/whoami" '"instance":"web-1"' || fail "$cbase/whoami is not served by web-1"
ok "compose exec proxy parachute deploy web --target web-1:3000 routes $cbase"
bun "$HERE/load.ts" "$cbase/whoami" 150 \
  web-1,web-2,web-3 "cd '$ROOT' && HTTP_PUBLISH=$COMPOSE_HTTP HTTPS_PUBLISH=$COMPOSE_HTTPS podman-compose -p parachute exec -T proxy parachute deploy web --target web-2:3000,web-3:3000 | grep -qx 'exit code: 0'" \
  web-2,web-3 "podman stop -t 10 parachute-web-1 >/dev/null" ||
  fail "requests failed or went to web-1 during the compose redeploy (see load: lines above)"
ok "redeploy to web-2 + web-3 by service name, and web-1 stopped, under load: 0 failed requests"

step "compose: down and up again keep the deployed service"
compose down -t 15 >/dev/null 2>&1
podman volume exists parachute_state || fail "compose down removed the state volume"
compose up -d --no-build >/tmp/container-check-compose-up.log 2>&1 || { tail -20 /tmp/container-check-compose-up.log; fail "podman-compose up failed"; }
wait_for 30 "\"Server started\" in the compose proxy's log" logged parachute_proxy_1 '"msg":"Server started"'
wait_for 20 "web-2 or web-3 answering $cbase/whoami" answers "$cbase/whoami" '"instance":"web-[23]"'
compose_exec parachute list | grep -q 'web-2:3000' || fail "compose exec proxy parachute list does not show web-2:3000"
ok "after down and up the proxy routes web to web-2 + web-3 from the volume parachute_state"
rm -f /tmp/container-check-compose-up.log
current=""
# The images the rebuilds replaced, now untagged (once the trap has removed
# the containers that used them).
drop_replaced=1
