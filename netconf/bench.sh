#!/bin/sh
# Runs netconf's benchmarks (root: they build namespaces) and prints the
# ratios side by side. One ip exec per object is slow (~3000 execs per
# iteration), so that benchmark runs fewer iterations than the others.
set -e
cd "$(dirname "$0")/.."
N=${BENCH_N:-5}
{
	go test -run XXX -bench 'ApplyFromScratch|IPBatch|ReapplyNoChange' -benchtime "${N}x" ./netconf/
	go test -run XXX -bench 'IPPerCommand' -benchtime 1x ./netconf/
} | go run ./netconf/internal/benchratio
