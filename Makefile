# ec2net — see README.md. The two commands that matter:
#   sudo make demo   build ec2net and run it in a simulated VPC (no EC2 needed)
#   sudo make test   run every test (namespace tests need root)
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Tests that build the binary find it here.
export EC2NET_BIN := $(CURDIR)/bin/ec2net

.PHONY: all build demo test test-short bench fuzz packages check-unit vet clean

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ec2net ./cmd/ec2net

demo: build
	$(GO) run ./cmd/ec2net-demo --ec2net $(CURDIR)/bin/ec2net

# Every test, real kernel in throwaway namespaces (root), real systemd in a
# container. Prints a summary line; the full log is in .cache/test.log.
test: build
	@mkdir -p .cache
	@set -o pipefail; \
	$(GO) test -race -count=1 -v -timeout 30m ./... 2>&1 | tee .cache/test.log | \
		grep -E '^(ok |FAIL|--- FAIL|--- SKIP|panic:)|exposure [0-9]' ; status=$${PIPESTATUS[0]}; \
	if [ $$status -ne 0 ]; then \
		echo "== what failed (full log: .cache/test.log)"; grep -E -B40 '^\s*--- FAIL|^panic:' .cache/test.log | tail -400; \
	fi; \
	pass=$$(grep -cE '^\s*--- PASS' .cache/test.log); fail=$$(grep -cE '^\s*--- FAIL' .cache/test.log); \
	skip=$$(grep -cE '^\s*--- SKIP' .cache/test.log); \
	echo "tests: $$pass passed, $$fail failed, $$skip skipped"; \
	exit $$status

test-short:
	$(GO) test -count=1 -short ./...

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# Prints ratios and targets side by side; see each benchmark's comment.
bench: build
	bash netconf/bench.sh
	$(GO) test -run XXX -bench AttachToTraffic -benchtime 50x ./agent/daemon/
	$(GO) test -run XXX -bench DaemonIdle -benchtime 1x ./cmd/ec2net/
	$(GO) test -run XXX -bench . ./agent/imds/

# Each fuzz target for FUZZTIME (default 60s).
FUZZTIME ?= 60s
fuzz:
	@for pkg in ./agent/imds/; do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

packages:
	bash packaging/build.sh dist

check-unit:
	bash systemd/check.sh

clean:
	rm -rf bin dist .cache
