package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"

	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/daemon"
	"github.com/ec2net/ec2net/netconf"
)

// withEnv opens the environment a command needs, reporting a failure in
// one line.
func withEnv(c *call, readOnly, withIMDS bool, fn func(e *env) int) int {
	e, err := newEnv(c.cfg, readOnly, withIMDS)
	if err != nil {
		fmt.Fprintf(c.stderr, "ec2net: %s\n", (&env{cfg: c.cfg}).explain(err))
		return exitError
	}
	defer e.close()
	return fn(e)
}

func (e *env) fail(w io.Writer, err error) int {
	fmt.Fprintf(w, "ec2net: %s\n", e.explain(err))
	return exitError
}

func cmdRun(ctx context.Context, c *call) int {
	// A long-running agent on every instance: a soft memory limit makes
	// the GC work a little harder instead of letting the heap double
	// between collections. GOMEMLIMIT in the environment wins.
	if _, set := lookupEnv("GOMEMLIMIT"); !set {
		debug.SetMemoryLimit(12 << 20)
	}
	return withEnv(c, false, true, func(e *env) int {
		err := daemon.Run(ctx, daemon.Options{Config: e.cfg, Logger: e.log, IMDS: e.imds, Reconciler: e.rec,
			NetNS: e.ns, Version: version})
		if err != nil {
			return e.fail(c.stderr, err)
		}
		return exitOK
	})
}

// cmdApply: one convergence of every attached ENI.
func cmdApply(ctx context.Context, c *call) int {
	asJSON := *c.opts.(*bool)
	defer oneShot(c)()
	return withEnv(c, false, true, func(e *env) int {
		out, err := converge.Once(ctx, e.imds, e.rec, converge.Options{Config: e.cfg, Wait: e.cfg.ApplyWait})
		if err != nil {
			return e.fail(c.stderr, err)
		}
		code := exitOK
		for _, f := range out.Result.Failed() {
			if !errors.Is(f.Err, netconf.ErrNoLink) {
				code = exitError
			}
		}
		if code == exitOK && len(out.Held()) > 0 {
			code = exitPending
		}
		if asJSON {
			writeJSON(c.stdout, applyJSON(out, code))
			return code
		}
		changes := 0
		for _, r := range out.Result.ENIs {
			changes += len(r.Applied)
			for i := range r.Applied {
				_, _ = io.WriteString(c.stdout, r.Applied[i].String()+"\n")
			}
			for _, f := range r.Failed {
				if errors.Is(f.Err, netconf.ErrNoLink) {
					fmt.Fprintf(c.stdout, "note: ENI %s %s is listed in IMDS but no link has its MAC here (detaching, or not attached yet)\n", r.MAC, orDash(r.ENIID, "-"))
					continue
				}
				fmt.Fprintf(c.stderr, "ec2net: %s %s: %s failed: %v\n", orDash(r.Link, r.MAC), orDash(r.ENIID, ""), f.Change.Text(), f.Err)
			}
		}
		for _, h := range out.Held() {
			fmt.Fprintf(c.stderr, "ec2net: ENI %s %s is %s\n", h.MAC, orDash(h.ENIID, "-"), h.Reason)
		}
		for _, f := range out.Result.Foreign {
			fmt.Fprintf(c.stdout, "note: left alone (not ec2net's): %s\n", f)
		}
		noteCNI(c.stdout, out.CNISigns)
		fmt.Fprintf(c.stdout, "ec2net apply: %d ENIs, %d changes, %d netlink writes\n", len(out.Snapshot.ENIs), changes, out.Result.Writes)
		return code
	})
}

// cmdPlan: what apply would change, without changing it.
func cmdPlan(ctx context.Context, c *call) int {
	o := c.opts.(planOpts)
	defer oneShot(c)()
	return withEnv(c, true, true, func(e *env) int {
		out, err := converge.Once(ctx, e.imds, e.rec, converge.Options{Config: e.cfg, Wait: e.cfg.ApplyWait, DryRun: true})
		if err != nil {
			return e.fail(c.stderr, err)
		}
		code := exitOK
		if *o.exitCode && len(out.Plan.Changes) > 0 {
			code = exitPending
		}
		if *o.json {
			writeJSON(c.stdout, planJSON(out))
			return code
		}
		fmt.Fprint(c.stdout, out.Plan.String())
		noteCNI(c.stdout, out.CNISigns)
		return code
	})
}

func cmdCleanup(_ context.Context, c *call) int {
	defer oneShot(c)()
	return withEnv(c, false, false, func(e *env) int {
		if pid := daemon.Running(e.rec.StateDir()); pid != 0 {
			fmt.Fprintf(c.stderr, "ec2net: note: ec2net run (pid %d) manages this namespace and will restore what cleanup removes; stop it first (systemctl stop ec2net)\n", pid)
		}
		res, err := e.rec.Cleanup()
		if err != nil {
			return e.fail(c.stderr, err)
		}
		code := exitOK
		n := 0
		for _, r := range res.ENIs {
			for _, ch := range r.Applied {
				fmt.Fprintln(c.stdout, ch)
				n++
			}
			for _, f := range r.Failed {
				fmt.Fprintf(c.stderr, "ec2net: %s failed: %v\n", f.Change.Text(), f.Err)
				code = exitError
			}
		}
		fmt.Fprintf(c.stdout, "ec2net cleanup: removed %d objects, %d netlink writes\n", n, res.Writes)
		return code
	})
}

// noteCNI says why secondary-enis = auto configured the primary only.
func noteCNI(w io.Writer, signs []string) {
	if len(signs) > 0 {
		fmt.Fprintf(w, "note: the Amazon VPC CNI manages this host's secondary ENIs (%s): only the primary ENI is configured (secondary-enis = auto; set all or none to decide)\n",
			strings.Join(signs, "; "))
	}
}

func writeJSON(w io.Writer, v any) {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func orDash(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// oneShot tunes a command that runs once over a whole instance (apply,
// plan, cleanup): its stdout becomes a buffer, flushed by the returned
// func (a line per change, thousands on a large instance, each a write
// otherwise), and unless GOGC says otherwise the heap may grow to five
// times the live data between collections (a cold apply of 15 ENIs x 100
// addresses allocates a few MiB in short-lived pieces; the daemon keeps
// its memory limit instead). Measured in BenchmarkColdApply15x100.
func oneShot(c *call) (flush func()) {
	if _, set := lookupEnv("GOGC"); !set {
		debug.SetGCPercent(400)
	}
	w := bufio.NewWriterSize(c.stdout, 64<<10)
	c.stdout = w
	return func() { _ = w.Flush() }
}

func lookupEnv(k string) (string, bool) { return os.LookupEnv(k) }
