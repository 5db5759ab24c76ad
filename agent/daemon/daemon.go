// Package daemon is `ec2net run`: one process that converges the kernel to
// IMDS at start (cold and warm attach), then keeps it true on link events
// (hot attach, detach, re-attach, rename), on a jittered periodic refresh
// (address and prefix changes, which have no kernel event), on SIGHUP, and
// after someone else deletes what ec2net owns (repair).
//
// Everything runs in one loop goroutine that owns all state (loop.go);
// IMDS reads run one at a time in a worker so the loop keeps answering the
// systemd watchdog and kernel events while a read waits on a slow IMDS.
// Kernel events arrive as one-slot signals (netconf.Watcher): a burst
// causes one re-read of the links and one read or apply. The decisions
// (when to read, when to repair, what a link change means) are made by
// small parts that tests drive without root or namespaces: the IMDS source,
// the namespace and the event stream are interfaces here.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/converge"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
)

// Source reads IMDS (*imds.Client).
type Source interface {
	converge.Source
	// ReadENIs reads the listing and the named ENIs, keeping prev's others.
	ReadENIs(ctx context.Context, prev *imds.Snapshot, macs []string) (*imds.Snapshot, error)
	// Peek reads the one key a pending ENI waits on; true when it changed.
	Peek(ctx context.Context, e *imds.ENI) (bool, error)
	// Forget drops what is cached about an ENI (its link went away: a
	// re-attach may bring a new device number).
	Forget(mac string)
}

// Namespace is what the daemon converges (*netconf.Reconciler).
type Namespace interface {
	converge.Target
	Revert(applied []netconf.Change) (*netconf.Result, error)
	StateDir() string
}

// Events is a kernel event stream (*netconf.Watcher).
type Events interface {
	LinksChanged() <-chan struct{}
	Deletions() <-chan struct{}
	Done() <-chan struct{}
	TakeDeleted() netconf.Deleted
	Err() error
	Close()
}

// Options wires the daemon to its collaborators.
type Options struct {
	Config     config.Config
	Logger     *zap.Logger
	IMDS       Source
	Reconciler Namespace
	NetNS      netns.NsHandle // the namespace to watch (the one ec2net runs in)
	Version    string

	// Watch subscribes to kernel events; nil means netconf.Watch(NetNS).
	Watch func() (Events, error)
	// Counters reads the stray-packet counters (demand.go); nil means
	// those of NetNS.
	Counters Counters
	// Notify sends an sd_notify state; nil means the real one
	// (NOTIFY_SOCKET), a no-op outside systemd.
	Notify func(state string)
	// Signals delivers SIGHUP (refresh now) and SIGUSR2 (test hook); nil
	// means the process's real signals.
	Signals <-chan os.Signal
	// Ready, if not nil, is closed after READY=1 was sent (tests).
	Ready chan<- struct{}
}

// ErrAlreadyRunning: another `ec2net run` manages this namespace.
var ErrAlreadyRunning = errors.New("another ec2net run manages this network namespace")

// Run runs the daemon until ctx is cancelled (SIGTERM). It leaves the
// configuration in place when it returns.
func Run(ctx context.Context, o Options) error {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Notify == nil {
		o.Notify = func(state string) { _, _ = daemon.SdNotify(false, state) }
	}
	if o.Watch == nil {
		ns := o.NetNS
		o.Watch = func() (Events, error) { return netconf.Watch(ns) }
	}
	if o.Counters == nil {
		o.Counters = nsCounters(o.NetNS)
	}
	sigs := o.Signals
	if sigs == nil {
		ch := make(chan os.Signal, 4)
		signal.Notify(ch, syscall.SIGHUP, syscall.SIGUSR2)
		defer signal.Stop(ch)
		sigs = ch
	}

	// One daemon per namespace; `ec2net cleanup` and `status` see it.
	pid, err := lockPIDFile(o.Reconciler.StateDir())
	if err != nil {
		return err
	}
	defer pid.release()

	events, err := o.Watch()
	if err != nil {
		return fmt.Errorf("subscribe to netlink events: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	// On return: cancel first, so that the IMDS worker stops, then wait
	// for it (defers run last-in first-out).
	defer wg.Wait()
	defer cancel()
	l := newLoop(o, sigs, &wg)
	return l.run(ctx, events)
}
