// Command benchratio reads the `go test -bench` output of `make bench`
// (netconf/bench.sh) on stdin, passes it through, and then prints each
// figure beside its anchor with the ratio and the goal, one section per
// comparison (sections.go), and a last line listing the goals missed.
// A section whose benchmarks did not run is left out.
//
//	go test -run XXX -bench . -benchtime 5x ./netconf/ | go run ./netconf/internal/benchratio
//
// It exits 1 when a benchmark failed or nothing was read; a missed goal
// is reported, not fatal (timings depend on the machine's load).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// results maps a benchmark's name (without "Benchmark" and the -N CPU
// suffix; sub-benchmarks keep their path) to its metrics by unit
// (ns/op, p99-ms, ...).
type results map[string]map[string]float64

func (r results) has(name string) bool { _, ok := r[name]; return ok }

// get returns a metric and whether it was reported.
func (r results) get(name, unit string) (float64, bool) {
	v, ok := r[name][unit]
	return v, ok
}

func (r results) v(name, unit string) float64 { return r[name][unit] }

// parse reads benchmark result lines and notes failures.
func parse(sc *bufio.Scanner, echo func(string)) (results, []string) {
	res := results{}
	var failed []string
	for sc.Scan() {
		line := sc.Text()
		echo(line)
		f := strings.Fields(line)
		switch {
		case len(f) > 2 && f[0] == "---" && f[1] == "FAIL:":
			failed = append(failed, f[2])
		case len(f) > 1 && f[0] == "FAIL":
			failed = append(failed, strings.Join(f[1:], " "))
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // not a result line ("BenchmarkX-2 --- FAIL" and the like)
		}
		name := f[0][len("Benchmark"):]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				m[f[i+1]] = v
			}
		}
		res[name] = m
	}
	return res, failed
}

// report collects the printed lines and the goals missed.
type report struct {
	missed []string
}

func (rp *report) section(title string) { fmt.Printf("\n%s\n", title) }

func (rp *report) line(format string, args ...any) { fmt.Printf("  "+format+"\n", args...) }

// goal prints whether a goal is met and remembers it if not.
func (rp *report) goal(what string, met bool) string {
	if met {
		return "met"
	}
	rp.missed = append(rp.missed, what)
	return "MISSED"
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func main() {
	res, failed := parse(bufio.NewScanner(os.Stdin), func(l string) { fmt.Println(l) })
	if len(res) == 0 {
		fmt.Println("benchratio: no benchmark results on stdin")
		os.Exit(1)
	}
	rp := &report{}
	fmt.Println("\n==== make bench: each figure beside its anchor ====")
	for _, s := range sections {
		s(res, rp)
	}
	fmt.Println()
	if len(rp.missed) > 0 {
		fmt.Printf("goals missed: %s\n", strings.Join(rp.missed, "; "))
		fmt.Println("(timings depend on the machine's load; re-run on an idle machine before concluding)")
	} else {
		fmt.Println("every goal measured here was met")
	}
	if len(failed) > 0 {
		fmt.Printf("benchmarks failed: %s\n", strings.Join(failed, "; "))
		os.Exit(1)
	}
}
