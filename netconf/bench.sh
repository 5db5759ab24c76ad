#!/bin/bash
# make bench: every benchmark with its anchor, then benchratio prints each
# figure beside its anchor with the ratio and the goal (root: they build
# namespaces; the boot benchmark boots systemd-nspawn like make test's
# packaging tests). The log is kept in .cache/bench.log.
#
# About 10 minutes on 2 cores. BENCH_N sets netconf's iterations (5);
# EC2NET_BENCH_SAMPLES=N takes N samples in each timeline benchmark instead
# of their defaults (a quick run: EC2NET_BENCH_SAMPLES=2). Timeline
# benchmarks run with -benchtime 1x: they take their samples themselves
# (a benchmark also runs once with b.N = 1 before the requested count).
set -o pipefail
cd "$(dirname "$0")/.."
N=${BENCH_N:-5}
mkdir -p .cache
run() {
	echo "== go test $*"
	go test -run XXX "$@" 2>&1 || echo "FAIL go test $*"
}
{
	run -bench 'ApplyFromScratch|IPBatch|ReapplyNoChange' -benchtime "${N}x" ./netconf/
	run -bench 'IPPerCommand' -benchtime 1x ./netconf/
	run -bench 'AttachToTraffic' -benchtime 50x ./agent/daemon/
	run -timeout 30m -bench 'PropagationLag1s|PropagationLag10s|PropagationLag60s|NewAddressDemand|NewIPv6AddressIPv4OnlyPrimary|Move$' -benchtime 1x ./agent/daemon/
	run -bench 'ColdApply15x100|DaemonIdle' -benchtime 1x ./cmd/ec2net/
	run -timeout 20m -bench 'Boot' -benchtime 1x ./packaging/
	run -bench . ./agent/imds/
} | grep -v -E '^\s+(vpcsim|logger|helpers_test|machine_test)\.go:' | tee .cache/bench.log | go run ./netconf/internal/benchratio
