# sessiond: make help lists the targets.
SHELL := /usr/bin/env bash
.DEFAULT_GOAL := help

GO       ?= go
BUF      := $(GO) tool -modfile=tools/go.mod buf
ARGS     ?=
FUZZTIME ?= 10s

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run sessiond (embedded in-memory store unless SESSIOND_REDIS_URL or ARGS="--redis-url=..." is set)
	$(GO) run ./cmd/sessiond $(ARGS)

.PHONY: build
build: ## Build bin/sessiond
	$(GO) build -o bin/sessiond ./cmd/sessiond

.PHONY: test
test: ## Run every test with -race against redis-server processes the tests start themselves
	@command -v redis-server >/dev/null || [ -n "$$REDIS_SERVER_BIN" ] || { \
	  echo "make test: redis-server is not installed; the tests start real Redis servers of their own."; \
	  echo "  Debian/Ubuntu: apt-get install -y redis-server    macOS: brew install redis"; \
	  echo "  (or set REDIS_SERVER_BIN to a redis-server binary)"; exit 1; }
	$(GO) test -race -count=1 -timeout 10m ./...

# The packages with fuzz targets, found (so that a moved target is never
# dropped); every func Fuzz... in their _test.go files is run. go test -fuzz
# takes one target per invocation, hence the loop.
FUZZ_PKGS := $(patsubst %/,%,$(sort $(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' .))))

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 10s); seeds are in each package's testdata/fuzz/
	@set -e; for pkg in $(FUZZ_PKGS); do \
	  for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$pkg/*_test.go); do \
	    echo "fuzz: $$pkg $$target for $(FUZZTIME)"; \
	    $(GO) test $$pkg -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME); \
	  done; \
	done

# The sessiond binary is built with $(GO) into a temporary directory and run
# in its own process with its default flags; the bench runs on a single Redis,
# then on a 3-master Cluster (BENCHARGS="--cluster=false": single only). With
# BENCHARGS="--target ..." it drives that running sessiond instead.
BENCH_OWN = $(if $(findstring --target,$(BENCHARGS)),,--sessiond "$$dir/sessiond" --cluster)

.PHONY: bench
bench: ## Load-test the sessiond binary against its floors, single Redis then Cluster (cmd/sessionbench); BENCHARGS="--concurrency 16,64 --rounds 5"
	@set -e; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	  $(GO) build -o "$$dir/sessiond" ./cmd/sessiond; \
	  $(GO) build -o "$$dir/sessionbench" ./cmd/sessionbench; \
	  "$$dir/sessionbench" $(BENCH_OWN) $(BENCHARGS)

.PHONY: soak
soak: ## Soak sessiond (not in CI): 10 min of mixed load at half capacity, Redis restarted every 2 min; SOAKARGS="--duration 30m"
	$(GO) run ./cmd/sessionsoak $(SOAKARGS)

# What server reflection serves: proto/ built by buf with its source info (the
# comments, so that grpcurl describe shows them) and without its imports, as a
# FileDescriptorSet that internal/daemon embeds (reflection.go).
REFLECTION_DESCRIPTORS := internal/daemon/session_authority.binpb

.PHONY: generate
generate: ## Regenerate gen/ from proto/ with buf, and the descriptors reflection serves
	$(BUF) generate
	$(BUF) build --exclude-imports --as-file-descriptor-set -o $(REFLECTION_DESCRIPTORS)

.PHONY: checkgenerate
checkgenerate: generate ## Fail if gen/ or the reflection descriptors are not what proto/ generates
	@git diff --exit-code -- gen/ $(REFLECTION_DESCRIPTORS) >/dev/null && [ -z "$$(git status --porcelain -- gen/ $(REFLECTION_DESCRIPTORS))" ] || { \
	  git status --short -- gen/ $(REFLECTION_DESCRIPTORS); echo "gen/ or $(REFLECTION_DESCRIPTORS) is stale: run make generate and commit the result"; exit 1; }

.PHONY: lint
lint: ## go vet, gofmt, buf lint and buf format
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(BUF) lint
	$(BUF) format -d --exit-code

.PHONY: breaking
breaking: ## Check proto/ for breaking changes against the main branch
	$(BUF) breaking --against '.git#branch=main'
