# The same steps run here, in CI (.ci/run) and in the Dockerfile's build stage.
BUN ?= bun
SOURCES := $(shell find src -name '*.ts') package.json bun.lock

.PHONY: all build test typecheck unit run demo bench docker clean install

all: build

build: dist/parachute

install:
	$(BUN) install --frozen-lockfile

# One executable: no development mode, no .env / bunfig.toml autoload from the working directory.
dist/parachute: $(SOURCES)
	$(BUN) build --compile --production --no-compile-autoload-dotenv --no-compile-autoload-bunfig src/main.ts --outfile dist/parachute

typecheck:
	$(BUN) x tsc --noEmit -p .

unit:
	$(BUN) test

test: typecheck unit

run:
	$(BUN) src/main.ts run --http-port 8080 --https-port 0 --state-dir .state --socket .state/parachute.sock

bench:
	$(BUN) run bench

clean:
	rm -rf dist .state
