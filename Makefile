# Switchboard — a messaging gateway. `make help` lists the targets.

GO        ?= go
BIN       ?= bin/switchboard
DATA      ?= data
ADDR      ?= 127.0.0.1:7070
FUZZTIME  ?= 30s
PKGS      := ./...
# staticcheck, pinned (v0.8.2 understands Go 1.26); `go run` fetches and caches it.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build bin/switchboard.
	$(GO) build -o $(BIN) ./cmd/switchboard

.PHONY: run
run: build ## Start the server: Badger in ./data, listening on $(ADDR).
	$(BIN) serve --data $(DATA) --listen $(ADDR)

.PHONY: cluster
cluster: build ## Start three nodes of one cluster on this machine (ports 7071-7073, data in ./cluster-data).
	BIN=$(BIN) DATA=cluster-data scripts/cluster.sh

.PHONY: million
million: build ## The one-host cluster run: NODES (53) nodes, CONNS (1000000) connections held for HOLD, then 1:1 traffic at RATE for DURATION (scripts/million.sh; not in make test).
	BIN=$(BIN) scripts/million.sh

.PHONY: test
test: ## Run every test with the race detector (fuzz seed corpora included).
	$(GO) vet $(PKGS)
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

.PHONY: bench
bench: ## Run the Go benchmarks (parse/append, storage, end to end).
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m $(PKGS)

.PHONY: fuzz
fuzz: ## Fuzz every decoder for $(FUZZTIME) each (PKGS=./protocol/ for one package).
	@log=$$(mktemp); trap 'rm -f $$log $$log.rc' EXIT; \
	for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    { $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; echo $$? > $$log.rc; } 2>&1 | tee $$log; \
	    [ "$$(cat $$log.rc)" = 0 ] && continue; \
	    if grep -q 'context deadline exceeded' $$log && ! grep -q 'Failing input written' $$log; then \
	      echo "   $$f: ended by Go's fuzzing deadline race (golang/go#51484), no failing input: not a finding"; \
	      continue; \
	    fi; \
	    exit 1; \
	  done; \
	done

.PHONY: soak
soak: ## Slow crash, soak and capacity tests (build tag "soak").
	$(GO) test -tags soak -count=1 -timeout 60m -run 'Soak|Crash|Capacity' $(PKGS)

.PHONY: lint
lint: ## gofmt, go vet, staticcheck (pinned, via go run) and go mod tidy -diff.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt -l:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) vet -tags soak $(PKGS)
	printf 'default:\nsoak: -tags soak\n' | $(GO) run $(STATICCHECK) -matrix $(PKGS)
	$(GO) mod tidy -diff

.PHONY: clean
clean: ## Remove build output (not the data folder).
	rm -rf bin
