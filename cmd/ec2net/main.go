// Command ec2net configures EC2 Elastic Network Interfaces on Linux: links
// up, private IPv4/IPv6 addresses and per-ENI policy routing, from what the
// instance metadata service says. See `ec2net help`.
//
// The walk of `ec2net apply`: main → run → cmdApply (commands.go) →
// converge.Once → imds.Client.Snapshot and Settle → evidence.Tracker.Filter
// → netconf.Reconciler.ApplyChecked → compute (read, plan.Desired, diff) →
// the evidence check of its changes → execute (rtnl.Writer.Send); see
// docs/ARCHITECTURE.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"

	"github.com/ec2net/ec2net/agent/config"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitError   = 1
	exitPending = 2 // apply: some ENI pending or invalid; status: some ENI not configured; plan --exit-code: changes
)

// command is one subcommand: its help, the configuration keys it takes as
// flags, its own flags and what it does.
type command struct {
	name, args, summary, exits string
	scope                      config.Scope // keys taken as flags; 0: none, no config file
	writes                     bool         // needs CAP_NET_ADMIN
	flags                      func(fs *flag.FlagSet) any
	run                        func(ctx context.Context, c *call) int
}

// call is one invocation: its streams, configuration and parsed flags.
type call struct {
	stdout, stderr io.Writer
	cfg            config.Config
	args           []string
	opts           any // what command.flags returned
}

func commands() []command {
	return []command{
		{name: "run", summary: "run the daemon: converge now, then on every link event, refresh and repair",
			exits: "0 stopped by SIGTERM; 1 error", scope: config.ForRun, writes: true, run: cmdRun},
		{name: "apply", summary: "converge once (cloud-init, or fixing routing by hand); waits --wait for pending ENIs",
			exits: "0 converged; 1 error; 2 some ENI pending or invalid", scope: config.ForApply, writes: true,
			flags: jsonFlag, run: cmdApply},
		{name: "plan", summary: "print what apply would change, in ip(8) syntax; changes nothing",
			exits: "0 success (with --exit-code: 0 nothing to change, 2 changes); 1 error", scope: config.ForApply,
			flags: planFlags, run: cmdPlan},
		{name: "status", args: "[ethN|eni-…|MAC]", summary: "one row per ENI: IMDS against the kernel, each address's path verified (one ENI in full when named)",
			exits: "0 every ENI configured (or excluded, or without a link) and every address on its path; 1 error (IMDS not read); 2 some ENI not configured or some address off its path",
			scope: config.ForStatus, flags: jsonFlag, run: cmdStatus},
		{name: "doctor", summary: "check everything that makes ENIs work, one line per finding with what to do",
			exits: "0 nothing to do; 1 problems found; 2 some check could not run (and no problem found)",
			scope: config.ForStatus, flags: doctorFlags, run: cmdDoctor},
		{name: "cleanup", summary: "remove everything ec2net added, and nothing else",
			exits: "0 done; 1 error", scope: config.ForCleanup, writes: true, run: cmdCleanup},
		{name: "defaults", summary: "print the default configuration file, every key commented",
			exits: "0", run: cmdDefaults},
		{name: "version", summary: "print the version", exits: "0", run: cmdVersion},
	}
}

func jsonFlag(fs *flag.FlagSet) any {
	return fs.Bool("json", false, "print JSON (see the man page for its shape)")
}

type planOpts struct{ json, exitCode *bool }

func planFlags(fs *flag.FlagSet) any {
	return planOpts{json: fs.Bool("json", false, "print JSON"),
		exitCode: fs.Bool("exit-code", false, "exit 2 when there are changes, 0 when none")}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `ec2net configures EC2 Elastic Network Interfaces: it brings attached ENIs up,
adds their private IPv4/IPv6 addresses and per-ENI policy routing (table
10000+100*card+device, rules "from <address>" at the same priority), so that
replies leave through the ENI they belong to.

Usage: ec2net <command> [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  ec2net %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
"ec2net <command> --help" shows a command's flags; each configuration key it
uses is also a flag. "ec2net --version" prints the version.
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitError
	}
	name, args := args[0], args[1:]
	switch name {
	case "help", "-h", "--help", "-help":
		usage(stdout)
		return exitOK
	case "--version", "-version":
		name = "version"
	}
	for _, c := range commands() {
		if c.name == name {
			return c.invoke(args, stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "ec2net: unknown command %q (see ec2net help)\n", name)
	return exitError
}

func (c command) invoke(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ec2net "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfgPath *string
	var keys *config.Flags
	if c.scope != 0 {
		cfgPath = fs.String("config", config.DefaultPath, "configuration file")
		// Every key is accepted (the configuration is shared: scripts pass
		// the same flags to every command); help lists the command's own.
		keys = config.RegisterFlags(fs, config.ForRun|config.ForApply|config.ForStatus|config.ForCleanup)
	}
	cl := &call{stdout: stdout, stderr: stderr}
	if c.flags != nil {
		cl.opts = c.flags(fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.help(stdout, fs)
			return exitOK
		}
		fmt.Fprintf(stderr, "ec2net %s: %v (see ec2net %s --help)\n", c.name, err, c.name)
		return exitError
	}
	cl.args = fs.Args()
	if len(cl.args) > 0 && c.args == "" {
		fmt.Fprintf(stderr, "ec2net %s: unexpected argument %q\n", c.name, cl.args[0])
		return exitError
	}
	if c.scope != 0 {
		cfg, err := config.Load(*cfgPath)
		if err == nil {
			cfg, err = keys.Apply(cfg)
		}
		if err != nil {
			fmt.Fprintf(stderr, "ec2net: %v\n", err)
			return exitError
		}
		cl.cfg = cfg
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if c.writes {
		if err := checkNetAdmin(); err != nil {
			fmt.Fprintf(stderr, "ec2net: %v\n", err)
			return exitError
		}
	}
	return c.run(ctx, cl)
}

// help prints a command's usage on stdout: what it does, its flags (only
// the ones it takes) and its exit status.
func (c command) help(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: ec2net %s [flags]", c.name)
	if c.args != "" {
		fmt.Fprintf(w, " %s", c.args)
	}
	fmt.Fprintf(w, "\n\n%s%s.\n", strings.ToUpper(c.summary[:1]), c.summary[1:])
	own := func(f *flag.Flag) bool {
		return f.Name == "config" || !config.IsKey(f.Name) || config.InScope(f.Name, c.scope)
	}
	if n := countFlags(fs); n > 0 {
		fmt.Fprintln(w, "\nFlags:")
		fs.VisitAll(func(f *flag.Flag) {
			if !own(f) {
				return
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" {
				def = fmt.Sprintf(" (default %s)", f.DefValue)
			}
			fmt.Fprintf(w, "  --%s\n        %s%s\n", f.Name, f.Usage, def)
		})
		fmt.Fprintln(w, "\nThe other configuration keys are accepted as flags too, and ignored.")
	}
	fmt.Fprintf(w, "\nExit status: %s.\n", c.exits)
}

func countFlags(fs *flag.FlagSet) int {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n
}

func cmdVersion(_ context.Context, c *call) int {
	fmt.Fprintf(c.stdout, "ec2net %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return exitOK
}

func cmdDefaults(_ context.Context, c *call) int {
	fmt.Fprintf(c.stdout, "# /etc/ec2net/ec2net.conf: ec2net configuration (ec2net %s).\n# Every key is also a command-line flag (--key value); flags win.\n\n%s", version, config.Render(config.Default()))
	return exitOK
}
