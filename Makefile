# The same steps run here, in CI (.ci/run) and in the Dockerfile's build stage.
BUN ?= bun
SOURCES := $(shell find src -name '*.ts') package.json bun.lock

.PHONY: all build test test-tools test-binary typecheck check suite suite-lane-1 suite-lane-2 binary-lane-1 binary-lane-2 coverage run demo bench docker sample clean install bun

all: build

build: dist/parachute

# A fresh machine needs only Node/npm and make: Bun comes from npm, the
# dependencies from the lockfile.
bun:
	@command -v $(BUN) >/dev/null 2>&1 || npm install -g bun

install: node_modules/.installed

node_modules/.installed: package.json bun.lock | bun
	$(BUN) install --frozen-lockfile
	@touch $@

# One executable: no development mode, no .env / bunfig.toml autoload from the working directory.
dist/parachute: $(SOURCES) | install
	$(BUN) build --compile --production --no-compile-autoload-dotenv --no-compile-autoload-bunfig src/main.ts --outfile dist/parachute

typecheck: install
	$(BUN) x tsc --noEmit -p .

# The in-process unit tests beside the code: seconds, no processes, no network.
check: install
	$(BUN) test ./src

BUN_TEST := $(BUN) test --timeout 60000

# Every test: the unit tests and the end-to-end suites (real processes, from
# source), in two `bun test` processes at once: the suites spend most of their
# time waiting on timers, sockets and other processes. Lane 1 has the files
# named here; lane 2 has the unit tests and every other file, so a new suite is
# never left out. The lanes hold about the same time, and the suites that move
# the most bytes (bodies, forwarding, websocket vs. streaming, upgrade) are
# split between them. -O prints each lane's output whole once it ends.
SUITE_LANE_1 := test/tls.test.ts test/streaming.test.ts test/upgrade.test.ts test/cli.test.ts \
	test/tls-custom.test.ts test/rollout.test.ts test/maintenance.test.ts test/buffering.test.ts test/demo.test.ts \
	test/tls-challenges.test.ts test/status-browser.test.ts
SUITE_LANE_2 := ./src $(addprefix ./,$(filter-out $(SUITE_LANE_1),$(wildcard test/*.test.ts)))

suite: install
	@$(MAKE) --no-print-directory -j2 -O suite-lane-1 suite-lane-2

suite-lane-1: install
	$(BUN_TEST) $(addprefix ./,$(SUITE_LANE_1))

suite-lane-2: install
	$(BUN_TEST) $(SUITE_LANE_2)

# The suites that exercise what the compiled binary does differently run
# again against it: what users install is what gets tested. binary.test.ts
# (the executable itself), smoke, zero-downtime, the upgrade (the binary
# re-executes itself), workers (it spawns itself), TLS (ACME with pebble,
# every challenge), and the status page in a browser (its page, script and
# style are in the binary).
# The other suites run the same bundled code paths from source in `suite`.
BINARY_LANE_1 := test/tls.test.ts test/tls-challenges.test.ts
BINARY_LANE_2 := test/binary.test.ts test/smoke.test.ts test/zero-downtime.test.ts test/upgrade.test.ts test/workers.test.ts test/status-browser.test.ts

test-binary: dist/parachute
	@$(MAKE) --no-print-directory -j2 -O binary-lane-1 binary-lane-2

binary-lane-1 binary-lane-2: binary-lane-%:
	PARACHUTE_BIN=dist/parachute $(BUN_TEST) $(addprefix ./,$(BINARY_LANE_$*))

# Function and line coverage of the unit tests (seconds), as a table and as
# dist/coverage/lcov.info. Bun lists only the modules the tests load; the
# end-to-end suites' servers are child processes, which Bun's coverage does
# not follow, so they add nothing here.
coverage: install
	$(BUN) test --coverage --coverage-reporter=text --coverage-reporter=lcov --coverage-dir=dist/coverage ./src

# pebble, openssl and curl for the TLS suites, chromium for the status page's browser test, installed when missing.
test-tools:
	@bash scripts/test-tools.sh

test: test-tools typecheck suite test-binary

run: install
	$(BUN) src/main.ts run --http-port 8080 --https-port 0 --state-dir .state --socket .state/parachute.sock

bench: install
	$(BUN) run bench

# The zero-downtime demo (scripts/demo.ts): the proxy and four sample app
# instances on free local ports, a redeploy under load, a report, then it keeps
# running until Ctrl-C. DEMO_EXIT=1 stops right after the report;
# PARACHUTE_BIN=dist/parachute runs the compiled binary instead of the source.
demo: install
	$(BUN) scripts/demo.ts

# The sample app alone (sample/app.ts): PORT (default 3000), BIND, INSTANCE.
sample: | bun
	$(BUN) sample/app.ts

# The container image (Dockerfile: this Makefile's install and build steps in
# oven/bun, the binary on debian-slim). docker-compose.yml adds the sample app.
docker:
	docker build -t parachute .

clean:
	rm -rf dist .state
