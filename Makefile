# The same steps run here, in CI (.ci/run) and in the Dockerfile's build stage.
BUN ?= bun
SOURCES := $(shell find src -name '*.ts') package.json bun.lock

.PHONY: all build test test-tools test-binary typecheck check suite run demo bench docker sample clean install bun

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

# Every test: the unit tests and the end-to-end suites (real processes, from source).
suite: install
	$(BUN) test --timeout 60000

# The end-to-end suites that matter most run again against the compiled
# binary: what users install is what gets tested.
BINARY_SUITES := test/binary.test.ts test/smoke.test.ts test/zero-downtime.test.ts test/draining.test.ts \
	test/state.test.ts test/metrics.test.ts test/websocket.test.ts test/tls.test.ts test/upgrade.test.ts test/workers.test.ts

test-binary: dist/parachute
	PARACHUTE_BIN=dist/parachute $(BUN) test --timeout 60000 $(BINARY_SUITES)

# pebble, openssl and curl for the TLS suites, installed when missing.
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
