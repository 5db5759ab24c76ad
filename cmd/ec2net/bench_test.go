package main

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDaemonIdle runs the real `ec2net run` in the simulated instance
// and reports its resident memory, CPU use between refreshes and IMDS
// requests per quiet refresh. Targets: RSS ≤ 20 MiB, CPU ≈ 0, requests ≤
// 1 + 4 per ENI. Run with -benchtime 1x (make bench); each iteration
// measures an idle window of 5 s.
func BenchmarkDaemonIdle(b *testing.B) {
	bed := newBed(b, "bmidle")
	var logs bytes.Buffer
	cmd := exec.Command("ip", "netns", "exec", bed.vpc.Instance, ec2netBin, "run",
		"--imds-endpoint", "http://169.254.169.254", "--state-dir", bed.stateDir, "--config", "/dev/null",
		"--refresh-interval", "1h")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	must(b, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if b.Failed() {
			b.Logf("daemon log:\n%s", logs.String())
		}
	}()
	wantRules := len(bed.secondaryAddrs()) + 1 // + eth2's delegated prefix
	waitFor(b, 15*time.Second, func() bool {
		return strings.Count(bed.ownedRules(), "proto 236") >= wantRules
	})
	pid := cmd.Process.Pid
	enis := 3
	// refresh forces one full read (SIGHUP) and returns its IMDS requests;
	// the refresh is done when the fake's counter stops moving.
	refresh := func() int {
		bed.vpc.IMDS.ResetCounters()
		must(b, cmd.Process.Signal(syscall.SIGHUP))
		last, stableSince := -1, time.Now()
		waitFor(b, 10*time.Second, func() bool {
			n := bed.vpc.IMDS.TotalRequests()
			if n != last {
				last, stableSince = n, time.Now()
				return false
			}
			return n > 0 && time.Since(stableSince) > 300*time.Millisecond
		})
		return last
	}
	for i := 0; i < b.N; i++ {
		last := refresh()
		b.ReportMetric(float64(last), "imds-req/refresh")
		b.ReportMetric(float64(1+4*enis), "imds-req-budget")

		cpu0 := cpuTicks(b, pid)
		window := 5 * time.Second
		time.Sleep(window) // the measurement window itself
		cpu1 := cpuTicks(b, pid)
		b.ReportMetric(float64(cpu1-cpu0)/100/window.Seconds()*100, "cpu-%")
		b.ReportMetric(float64(rssKiB(b, pid))/1024, "rss-MiB")
		// Memory stays flat: after 30 full refreshes (each a read and a
		// no-change reconcile) to reach the GC's steady state, 30 more
		// must not grow RSS.
		for j := 0; j < 30; j++ {
			refresh()
		}
		rss1 := rssKiB(b, pid)
		for j := 0; j < 30; j++ {
			refresh()
		}
		rss2 := rssKiB(b, pid)
		b.ReportMetric(float64(rss1)/1024, "rss-after-30-MiB")
		b.ReportMetric(float64(rss2-rss1)/1024, "rss-growth-next-30-MiB")
	}
	b.ReportMetric(0, "ns/op")
}

func waitFor(t testing.TB, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpuTicks is utime+stime of pid in clock ticks (USER_HZ = 100).
func cpuTicks(t testing.TB, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	must(t, err)
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	ut, _ := strconv.Atoi(fields[11])
	st, _ := strconv.Atoi(fields[12])
	return ut + st
}

func rssKiB(t testing.TB, pid int) int {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	must(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
