// Package netconf is the only code in ec2net that writes kernel networking
// state. Each pass reads a namespace's links, addresses, routes and rules
// (one dump of each kind: "have"), takes netconf/plan's desired state
// ("want") and the ownership record ("owned"), computes what the kernel
// lacks (missing.go) and what ec2net owns but no longer wants (extra.go),
// and makes those netlink changes (execute.go), touching only what ec2net
// owns: routes and rules tagged with Protocol and addresses in the record.
//
// The walk of one pass: Reconciler.Apply → begin (locks, record) →
// compute (read → plan.Desired → diff) → execute (rtnl.Writer.Send) →
// commit (record).
package netconf

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/ec2net/ec2net/netconf/plan"
	"github.com/vishvananda/netns"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// Protocol is the rtnetlink protocol number (rtm_protocol for routes,
// FRA_PROTOCOL for rules) on every route and rule ec2net creates; it is how
// ec2net recognises its own objects and leaves everyone else's alone.
//
// 236 is not named in iproute2's rt_protos (/usr/share/iproute2/rt_protos
// and the kernel's RTPROT_* stop at 99 for routing daemons: bird 12, zebra
// 11, dhcp 16, keepalived 18, babel 42, openr 99, bgp 186, isis 187, ospf
// 188, rip 189, eigrp 192) and no routing daemon we know uses it. Name it
// locally with `echo "236 ec2net" >> /etc/iproute2/rt_protos.d/ec2net.conf`.
const Protocol = 236

const tableLocal = plan.TableLocal

// Options configures a Reconciler.
type Options struct {
	// NetNS is the namespace to act in. The zero value and netns.None()
	// mean the caller's current namespace.
	NetNS netns.NsHandle
	// StateDir holds this namespace's ownership record; created 0700 if
	// missing. Empty means /run/ec2net/<nsutil.Cookie(NetNS)>.
	StateDir string
	Logger   *zap.Logger // nil: no logging
	// ReadOnly opens the namespace for Plan and Status only: the state
	// directory is neither created nor locked when it cannot be, and an
	// unreadable ownership record (not root) is reported by RecordError
	// instead of failing. Apply and Cleanup refuse to run.
	ReadOnly bool
}

// Reconciler reads and changes one namespace. Its methods are safe for
// concurrent use (they serialise).
type Reconciler struct {
	mu             sync.Mutex
	w              *rtnl.Writer // every write
	addrDumper     *rtnl.Dumper // (concurrent with rules)
	ruleDumper     *rtnl.Dumper
	linkDumper     *rtnl.Dumper
	routeDumper    *rtnl.Dumper // strict: the kernel filters route dumps
	ethFD          int
	lockFD         int // <stateDir>/lock: serialises ec2net processes in one namespace
	stateDir       string
	readOnly       bool
	recordErr      error // why the ownership record could not be read
	log            *zap.Logger
	owned          *record // as last read or written
	ownedBytes     []byte  // the record file's bytes that owned was read from or written as; nil: none
	writes         int
	reported       map[string]bool // foreign objects already logged
	readAll        bool            // a pass has read every table in use
	ruleBuf        []kRule         // reused by read
	kernelMarks    bool            // the kernel keeps the protocol on addresses (seen on one of ours)
	ns             netns.NsHandle  // the namespace (a descriptor of our own), for sysctl
	sysctlReadOnly bool            // /proc/sys/net cannot be written here
	noAddrProto    bool            // test mode: behave as on a kernel without address marks
}

// New opens netlink sockets in o.NetNS and the ownership record.
func New(o Options) (*Reconciler, error) {
	ns := o.NetNS
	if ns <= 0 {
		cur, err := netns.Get()
		if err != nil {
			return nil, fmt.Errorf("netconf: current namespace: %w", err)
		}
		defer cur.Close()
		ns = cur
	}
	r := &Reconciler{ethFD: -1, lockFD: -1, ns: netns.None(), log: o.Logger, reported: map[string]bool{}, readOnly: o.ReadOnly,
		// Kernels before 5.18 ignore IFA_PROTO; this mode lets tests show
		// that ownership holds there too (the record, write-ahead).
		noAddrProto: os.Getenv("EC2NET_TEST_NO_ADDR_PROTO") == "1"}
	r.kernelMarks = !r.noAddrProto && kernelHasAddrProto()
	if r.log == nil {
		r.log = zap.NewNop()
	}
	r.stateDir = o.StateDir
	if r.stateDir == "" {
		c, err := nsutil.Cookie(ns)
		if err != nil {
			return nil, fmt.Errorf("netconf: name namespace: %w", err)
		}
		r.stateDir = filepath.Join(config.Default().StateDir, c)
	}
	if err := r.openLock(); err != nil {
		return nil, err
	}
	r.loadRecord()
	// Close-on-exec: the descriptor must not leak into what ec2net runs.
	if fd, err := unix.FcntlInt(uintptr(ns), unix.F_DUPFD_CLOEXEC, 0); err == nil {
		r.ns = netns.NsHandle(fd)
	}
	if err := r.openSockets(ns); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Reconciler) openLock() error {
	if r.readOnly {
		// Shared lock where we may open it; a non-root reader goes
		// without (it writes nothing).
		if fd, err := unix.Open(filepath.Join(r.stateDir, "lock"), unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			r.lockFD = fd
		}
		return nil
	}
	if err := os.MkdirAll(r.stateDir, 0o700); err != nil {
		return fmt.Errorf("netconf: state dir: %w", err)
	}
	fd, err := unix.Open(filepath.Join(r.stateDir, "lock"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("netconf: state lock: %w", err)
	}
	r.lockFD = fd
	return nil
}

// kernelHasAddrProto reports whether the running kernel keeps IFA_PROTO
// on addresses: every kernel from 5.18 does (Amazon Linux 2023, Ubuntu
// 24.04). Older ones (AL2's 5.10, Ubuntu 22.04's 5.15, RHEL 9's 5.14) may
// have it backported: then it is learnt from the first address of ours
// dumped with the mark (have.go), never assumed.
func kernelHasAddrProto() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 18
}

// reopenLockIfGone makes the state directory and its lock again when
// someone deleted them: another ec2net process would otherwise lock a new
// file while this one holds the old, and the two would not take turns.
func (r *Reconciler) reopenLockIfGone() {
	var held, now unix.Stat_t
	if unix.Fstat(r.lockFD, &held) == nil && unix.Stat(filepath.Join(r.stateDir, "lock"), &now) == nil &&
		held.Ino == now.Ino && held.Dev == now.Dev {
		return
	}
	old := r.lockFD
	if err := r.openLock(); err != nil {
		r.lockFD = old // keep the old one: better than none
		r.log.Warn("state directory gone and cannot be made again", zap.Error(err))
		return
	}
	unix.Close(old)
	r.log.Warn("state directory was deleted; made it again", zap.String("dir", r.stateDir))
}

func (r *Reconciler) openSockets(ns netns.NsHandle) error {
	w, err := rtnl.NewWriter(ns)
	if err != nil {
		return fmt.Errorf("netconf: netlink socket: %w", err)
	}
	r.w = w
	for _, d := range []struct {
		dst    **rtnl.Dumper
		strict bool
	}{{&r.addrDumper, false}, {&r.ruleDumper, false}, {&r.linkDumper, false}, {&r.routeDumper, true}} {
		if *d.dst, err = rtnl.NewDumper(ns, d.strict); err != nil {
			return fmt.Errorf("netconf: netlink socket: %w", err)
		}
	}
	// The ethtool socket must live in the namespace: ioctls resolve link
	// names in the socket's namespace.
	_ = nsutil.Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err == nil {
			r.ethFD = fd
		}
		return err
	})
	return nil
}

// Close releases the sockets and the lock.
func (r *Reconciler) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.w != nil {
		r.w.Close()
		r.w = nil
	}
	for _, d := range []**rtnl.Dumper{&r.addrDumper, &r.ruleDumper, &r.linkDumper, &r.routeDumper} {
		if *d != nil {
			(*d).Close()
			*d = nil
		}
	}
	if r.ns.IsOpen() {
		r.ns.Close()
		r.ns = netns.None()
	}
	for _, fd := range []*int{&r.ethFD, &r.lockFD} {
		if *fd >= 0 {
			unix.Close(*fd)
			*fd = -1
		}
	}
	return nil
}

// RecordError says why the ownership record could not be read at the
// last pass (nil when it was, or did not exist): without it, `status`
// cannot tell ec2net's addresses from others'.
func (r *Reconciler) RecordError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.recordErr
}

// StateDir returns the directory of the ownership record.
func (r *Reconciler) StateDir() string { return r.stateDir }

// begin starts a pass: it takes the reconciler's mutex and the
// namespace's state lock (shared for reading passes, exclusive for passes
// that write) and reloads the ownership record, so that the daemon and a
// concurrent `ec2net apply` or `cleanup` in the same namespace take turns
// and each starts from the other's records. end releases both.
func (r *Reconciler) begin(exclusive bool) (end func(), err error) {
	r.mu.Lock()
	if r.w == nil || (r.lockFD < 0 && !r.readOnly) {
		r.mu.Unlock()
		return nil, errors.New("netconf: reconciler closed")
	}
	if exclusive && r.readOnly {
		r.mu.Unlock()
		return nil, errors.New("netconf: opened read-only")
	}
	if r.lockFD < 0 {
		r.loadRecord()
		return r.mu.Unlock, nil
	}
	if !r.readOnly {
		r.reopenLockIfGone()
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	for {
		err = unix.Flock(r.lockFD, how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		r.mu.Unlock()
		return nil, fmt.Errorf("netconf: state lock: %w", err)
	}
	r.loadRecord()
	return func() {
		_ = unix.Flock(r.lockFD, unix.LOCK_UN)
		r.mu.Unlock()
	}, nil
}

func (r *Reconciler) loadRecord() {
	b, err := readRecord(r.stateDir)
	if err == nil && r.owned != nil && r.ownedBytes != nil && bytes.Equal(b, r.ownedBytes) {
		// The very bytes this process last read or wrote: r.owned is
		// what they say (decoding a large instance's record took a
		// tenth of a quiet pass).
		r.recordErr = nil
		return
	}
	r.ownedBytes = nil
	var rec *record
	if err == nil {
		rec, err = decodeRecord(r.stateDir, b)
	}
	if err == nil && b != nil {
		r.ownedBytes = b
	}
	r.recordErr = err
	if err != nil && r.readOnly {
		rec = newRecord()
	} else if err != nil {
		// An unreadable record loses only which addresses ec2net added:
		// they are then never deleted, the safe side.
		r.log.Warn("ownership record unreadable, starting empty", zap.Error(err))
		rec = newRecord()
	}
	rec.prune()
	r.owned = rec
}

// Plan reads the kernel, computes the desired state and returns the
// changes Apply would make. No writes.
func (r *Reconciler) Plan(snap *imds.Snapshot, cfg config.Config) (*Plan, error) {
	end, err := r.begin(false)
	if err != nil {
		return nil, err
	}
	defer end()
	p, err := r.compute(snap, cfg, passPlan)
	if err != nil {
		return nil, err
	}
	return p.plan(), nil
}

// Apply makes the changes. Per-ENI failures are in the Result and do not
// stop the other ENIs; the error is for global failures only (the kernel
// cannot be read, the record cannot be written).
func (r *Reconciler) Apply(snap *imds.Snapshot, cfg config.Config) (*Result, error) {
	return r.ApplyChecked(snap, cfg, nil)
}

// ApplyChecked is Apply with a last look: check (when not nil) sees the
// changes the pass would make, computed under the same exclusive lock,
// before any is made; an error from it makes nothing and is returned as
// it is. It spares a caller the separate Plan it would otherwise need to
// decide whether to apply (a one-shot apply that would remove nothing
// needs no confirming read: agent/converge).
func (r *Reconciler) ApplyChecked(snap *imds.Snapshot, cfg config.Config, check func([]Change) error) (*Result, error) {
	end, err := r.begin(true)
	if err != nil {
		return nil, err
	}
	defer end()
	p, err := r.compute(snap, cfg, passApply)
	if err != nil {
		return nil, err
	}
	if check != nil {
		if err := check(p.changes); err != nil {
			return nil, err
		}
	}
	return r.execute(p)
}

// Cleanup removes everything ec2net added in the namespace (rules and
// routes carrying Protocol, addresses in the record) and nothing else: the
// same diff as Apply with nothing wanted.
func (r *Reconciler) Cleanup() (*Result, error) {
	end, err := r.begin(true)
	if err != nil {
		return nil, err
	}
	defer end()
	p, err := r.compute(&imds.Snapshot{}, config.Default(), passCleanup)
	if err != nil {
		return nil, err
	}
	return r.execute(p)
}
