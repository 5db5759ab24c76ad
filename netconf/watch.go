package netconf

import (
	"errors"
	"sync"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/plan"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Deleted counts deletion notifications by kind; Owned* those that
// carried ec2net's protocol.
type Deleted struct {
	Addrs, Routes, Rules                int
	OwnedAddrs, OwnedRoutes, OwnedRules int
}

// Total is the number of deletions of any kind.
func (d Deleted) Total() int { return d.Addrs + d.Routes + d.Rules }

// Watcher turns a namespace's rtnetlink notifications (one socket for
// links, addresses, routes and rules) into one-slot signals, the netmon
// pattern: a burst of events leaves one pending signal, and the consumer
// re-reads the state it needs once per burst instead of per event.
type Watcher struct {
	sub     *rtnl.Subscription
	links   chan struct{}
	dels    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	deleted Deleted
	err     error
}

// ErrEventsLost means the kernel dropped notifications: everything must be
// re-read.
var ErrEventsLost = rtnl.ErrOverrun

// Watch subscribes to ns (the caller's namespace when ns is not open).
func Watch(ns netns.NsHandle) (*Watcher, error) {
	sub, err := rtnl.Subscribe(ns, rtnl.Groups...)
	if err != nil {
		return nil, err
	}
	w := &Watcher{sub: sub, links: make(chan struct{}, 1), dels: make(chan struct{}, 1), done: make(chan struct{})}
	go w.receive()
	return w, nil
}

// LinksChanged signals that some link appeared, went, was renamed or
// changed flags.
func (w *Watcher) LinksChanged() <-chan struct{} { return w.links }

// Deletions signals that an address, route or rule was deleted
// (TakeDeleted says what).
func (w *Watcher) Deletions() <-chan struct{} { return w.dels }

// Done is closed when the subscription has ended; Err says why
// (ErrEventsLost when the kernel dropped notifications).
func (w *Watcher) Done() <-chan struct{} { return w.done }

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (w *Watcher) receive() {
	err := w.sub.Receive(func(typ uint16, body []byte) {
		switch typ {
		case unix.RTM_NEWLINK, unix.RTM_DELLINK:
			signal(w.links)
		case unix.RTM_DELADDR:
			a, _ := rtnl.DecodeAddr(body)
			w.count(func(d *Deleted) { d.Addrs++; d.OwnedAddrs += b2i(a.Proto == Protocol) })
		case unix.RTM_DELROUTE:
			r, _ := rtnl.DecodeRoute(body)
			w.count(func(d *Deleted) { d.Routes++; d.OwnedRoutes += b2i(r.Proto == Protocol) })
		case unix.RTM_DELRULE:
			r, _ := rtnl.DecodeRule(body)
			w.count(func(d *Deleted) { d.Rules++; d.OwnedRules += b2i(r.Proto == Protocol) })
		}
	})
	if errors.Is(err, rtnl.ErrClosed) {
		err = nil
	}
	w.mu.Lock()
	w.err = err
	w.mu.Unlock()
	close(w.done)
}

func (w *Watcher) count(f func(*Deleted)) {
	w.mu.Lock()
	f(&w.deleted)
	w.mu.Unlock()
	signal(w.dels)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TakeDeleted returns the deletions counted since the last call.
func (w *Watcher) TakeDeleted() Deleted {
	w.mu.Lock()
	defer w.mu.Unlock()
	d := w.deleted
	w.deleted = Deleted{}
	return d
}

// Err says why the subscription ended (nil after Close).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close ends the subscription; Done closes once it has.
func (w *Watcher) Close() { w.sub.Close() }

// Links returns the namespace's links (one dump).
func (r *Reconciler) Links() ([]plan.LinkInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.linkDumper == nil {
		return nil, errors.New("netconf: reconciler closed")
	}
	var links []rtnl.Link
	err := rtnl.RetryDump(func() (err error) {
		links, err = r.linkDumper.Links()
		return err
	})
	out := make([]plan.LinkInfo, len(links))
	for i, l := range links {
		out[i] = plan.LinkInfo{Index: l.Index, Name: l.Name, MAC: l.MAC, MTU: l.MTU, Up: l.Up, AltNames: l.AltNames}
	}
	return out, err
}
