# ec2net — see README.md. The two commands that matter:
#   sudo make demo   build ec2net and run it in a simulated VPC (no EC2 needed)
#   sudo make test   run every test (namespace tests need root)
SHELL := /bin/bash
# Go: from PATH, or where it is usually installed when sudo's secure_path
# dropped it (scripts/find-go.sh says so in one line). Its directory goes
# first on PATH, so that scripts and tests that run "go" find it too.
ORIG_PATH := $(PATH)
ifeq ($(origin GO),undefined)
GO := $(shell scripts/find-go.sh 2>/dev/null)
endif
ifneq ($(GO),)
export PATH := $(patsubst %/,%,$(dir $(GO))):$(PATH)
endif
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Tests that build the binary find it here.
export EC2NET_BIN := $(CURDIR)/bin/ec2net

.PHONY: all print-go-path build demo iproute2 test test-short test-deps bench fuzz packages man check-unit vet clean go

all: build

# Says where Go was found when it was not on PATH; fails with how to get
# Go (and the version go.mod needs) when there is none.
go:
	@PATH='$(ORIG_PATH)' scripts/find-go.sh >/dev/null

# For the tests: the go that make uses.
print-go-path:
	@echo $(GO)

build: go
	@mkdir -p bin
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/ec2net ./cmd/ec2net

# Needs only Go, the kernel and iproute2 (checked first, by package name).
demo: go iproute2 build
	$(GO) run ./cmd/ec2net-demo --ec2net $(CURDIR)/bin/ec2net

iproute2:
	@command -v ip >/dev/null || { echo "make demo needs ip(8): apt-get install iproute2 (Fedora/RHEL/AL2023: dnf install iproute)" >&2; exit 1; }
	@[ -e /etc/ssl/certs/ca-certificates.crt ] || [ -e /etc/pki/tls/certs/ca-bundle.crt ] || \
		{ echo "make demo fetches Go modules over HTTPS and finds no CA certificates: apt-get install ca-certificates (Fedora/RHEL/AL2023: dnf install ca-certificates)" >&2; exit 1; }

# What the tests need (debootstrap, systemd-nspawn, rpm, lintian, …):
# installed with apt-get on Debian/Ubuntu when missing, else listed.
test-deps:
	@bash scripts/test-deps.sh

# Every test, real kernel in throwaway namespaces (root), real systemd in a
# container. Prints a summary line; the full log is in .cache/test.log.
# Under CI (CI set, as CI=true) a skipped test fails the run: there every test must run.
test: test-deps build
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
	if [ $$status -eq 0 ] && [ -n "$$CI" ] && [ $$skip -gt 0 ]; then \
		echo "CI: $$skip tests were skipped; under CI every test must run:"; grep -E '^\s*--- SKIP' -A2 .cache/test.log; status=1; \
	fi; \
	exit $$status

test-short: go
	$(GO) test -count=1 -short ./...

vet: go
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

# Every benchmark with its anchor in one run (about 10 minutes on 2 cores;
# root); prints each figure beside its anchor, the ratio and the goal,
# and the goals missed (netconf/bench.sh; log in .cache/bench.log). The
# boot benchmark needs what make test's packaging tests need (test-deps).
bench: build
	bash netconf/bench.sh

# Each fuzz target for FUZZTIME (default 60s).
FUZZTIME ?= 60s
fuzz:
	@for pkg in ./agent/imds/ ./netconf/internal/rtnl/; do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep ^Fuzz); do \
	    echo "== $$pkg $$f"; $(GO) test -run XXX -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

# amd64 and arm64 .deb and .rpm in dist/: versioned names for repositories
# and stable ones (ec2net_amd64.deb, ec2net.aarch64.rpm, …) for the docs.
EC2NET_ARCHES ?= amd64 arm64
packages: go
	EC2NET_ARCHES="$(EC2NET_ARCHES)" bash packaging/build.sh dist

# Man pages, packaged ec2net.conf and shell completions from agent/config.
man: go
	$(GO) run ./packaging/genman

check-unit:
	bash systemd/check.sh

clean:
	rm -rf bin dist .cache
