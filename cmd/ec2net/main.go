// Command ec2net configures EC2 Elastic Network Interfaces on Linux: links
// up, private IPv4/IPv6 addresses and per-ENI policy routing, from what the
// instance metadata service says. See `ec2net help`.
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
	"runtime/debug"
	"syscall"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/daemon"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/agent/logging"
	"github.com/ec2net/ec2net/netconf"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// version is set at build time: -ldflags "-X main.version=…".
var version = "dev"

// Exit codes of apply (and the others where they apply).
const (
	exitOK      = 0
	exitError   = 1
	exitPending = 2 // some ENI is still pending or invalid
)

const usage = `ec2net configures EC2 Elastic Network Interfaces: it brings attached ENIs up,
adds their private IPv4/IPv6 addresses and per-ENI policy routing (table
10000+100*card+device, rules "from <address>" at the same priority), so that
replies leave through the ENI they belong to.

Usage:
  ec2net run       run the daemon: reconcile now, then on every link event and refresh
  ec2net apply     reconcile once (cloud-init, or fixing routing by hand); waits --wait for pending ENIs
  ec2net plan      print what apply would change; changes nothing
  ec2net status    one row per ENI: IMDS vs kernel (--json for machines)
  ec2net cleanup   remove everything ec2net added, and nothing else
  ec2net defaults  print the default configuration file, every key commented
  ec2net version   print the version

Run "ec2net <command> --help" for the flags; every configuration key is also a flag.
Exit codes: 0 converged, 2 some ENI pending or invalid (apply), 1 error.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitError
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version", "--version":
		fmt.Fprintf(stdout, "ec2net %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "defaults":
		fmt.Fprintf(stdout, "# /etc/ec2net/ec2net.conf: ec2net configuration (ec2net %s).\n# Every key is also a command-line flag (--key value); flags win.\n\n%s", version, config.Render(config.Default()))
		return exitOK
	case "run", "apply", "plan", "status", "cleanup":
	default:
		fmt.Fprintf(stderr, "ec2net: unknown command %q (see ec2net help)\n", cmd)
		return exitError
	}

	fs := flag.NewFlagSet("ec2net "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", config.DefaultPath, "configuration file")
	asJSON := false
	if cmd == "status" {
		fs.BoolVar(&asJSON, "json", false, "print JSON")
	}
	flags := config.RegisterFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: ec2net %s [flags]\n\nFlags:\n", cmd)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ec2net %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return exitError
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %v\n", err)
		return exitError
	}
	if cfg, err = flags.Apply(cfg); err != nil {
		fmt.Fprintf(stderr, "ec2net: %v\n", err)
		return exitError
	}
	log, err := logging.New(cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %v\n", err)
		return exitError
	}
	defer log.Sync() //nolint:errcheck // stderr

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	writes := cmd == "run" || cmd == "apply" || cmd == "cleanup"
	e, err := newEnv(cfg, log, writes)
	if err != nil {
		fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, cfg))
		return exitError
	}
	defer e.close()

	switch cmd {
	case "run":
		// A long-running agent on every instance: a soft memory limit makes
		// the GC work a little harder instead of letting the heap double
		// between collections. GOMEMLIMIT in the environment wins.
		if os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(12 << 20)
		}
		err = daemon.Run(ctx, daemon.Options{
			Config: cfg, Logger: log, IMDS: e.imds, Reconciler: e.rec, NetNS: e.ns, Version: version,
		})
		if err != nil {
			fmt.Fprintf(stderr, "ec2net: %s\n", explain(err, cfg))
			return exitError
		}
		return exitOK
	case "apply":
		return e.apply(ctx, stdout, stderr)
	case "plan":
		return e.plan(ctx, stdout, stderr)
	case "status":
		return e.status(ctx, stdout, stderr, asJSON)
	case "cleanup":
		return e.cleanup(stdout, stderr)
	}
	return exitError
}

// env is what every command needs: configuration, IMDS client, and a
// reconciler bound to the network namespace ec2net was started in.
type env struct {
	cfg  config.Config
	log  *zap.Logger
	imds *imds.Client
	rec  *netconf.Reconciler
	ns   netns.NsHandle
}

func newEnv(cfg config.Config, log *zap.Logger, writes bool) (*env, error) {
	if writes {
		if err := checkNetAdmin(); err != nil {
			return nil, err
		}
	}
	client, err := imds.New(imds.Options{
		Endpoint:     cfg.IMDSEndpoint,
		EndpointMode: cfg.IMDSEndpointMode,
		Version:      version,
		Logger:       log.Named("imds"),
	})
	if err != nil {
		return nil, err
	}
	// The namespace we were started in (`ip netns exec X ec2net …` works):
	// never assume it is the host's.
	ns, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("open current network namespace: %v", err)
	}
	cookie, err := nsutil.Cookie(ns)
	if err != nil {
		ns.Close()
		return nil, err
	}
	rec, err := netconf.New(netconf.Options{
		NetNS:    ns,
		StateDir: cfg.StateDir + "/" + cookie,
		Logger:   log.Named("netconf"),
	})
	if err != nil {
		ns.Close()
		return nil, err
	}
	return &env{cfg: cfg, log: log, imds: client, rec: rec, ns: ns}, nil
}

func (e *env) close() {
	e.rec.Close()
	e.ns.Close()
}

var errNotAdmin = errors.New("this needs CAP_NET_ADMIN: run it as root (sudo ec2net …)")

func checkNetAdmin() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		if os.Geteuid() == 0 {
			return nil
		}
		return errNotAdmin
	}
	if data[0].Effective&(1<<unix.CAP_NET_ADMIN) == 0 {
		return errNotAdmin
	}
	return nil
}

// explain turns an error into the one line that says what to do.
func explain(err error, cfg config.Config) string {
	endpoint := cfg.IMDSEndpoint
	if endpoint == "" {
		endpoint = os.Getenv("AWS_EC2_METADATA_SERVICE_ENDPOINT")
	}
	if endpoint == "" {
		endpoint = "http://169.254.169.254"
		if cfg.IMDSEndpointMode == "ipv6" {
			endpoint = "http://[fd00:ec2::254]"
		}
	}
	switch {
	case errors.Is(err, imds.ErrDisabled):
		return "IMDS is turned off for this instance (HTTP 403): enable it (aws ec2 modify-instance-metadata-options --http-endpoint enabled)"
	case errors.Is(err, imds.ErrUnreachable):
		return fmt.Sprintf("cannot reach IMDS at %s: is this an EC2 instance? see --imds-endpoint", endpoint)
	case errors.Is(err, errNotAdmin):
		return err.Error()
	case errors.Is(err, unix.EPERM), errors.Is(err, os.ErrPermission):
		return fmt.Sprintf("%v: this needs CAP_NET_ADMIN: run it as root (sudo ec2net …)", err)
	}
	return err.Error()
}
