// Package nsutil runs code inside network namespaces safely, names the
// namespace ec2net runs in (for per-namespace state), and gives tests
// throwaway namespaces, after the pattern of containernetworking/plugins'
// pkg/ns and pkg/testutils.
package nsutil

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Do runs fn with an OS thread switched into ns and waits for it. The
// work runs on a throwaway goroutine locked to its thread (the
// containernetworking ns.Do form): if switching back fails, the goroutine
// exits still locked and the Go runtime discards the thread, so a
// failure can never leave the caller's thread, or any thread the runtime
// reuses, in the wrong namespace. fn must not start goroutines that
// expect to inherit the namespace.
func Do(ns netns.NsHandle, fn func() error) error {
	if IsCurrent(ns) {
		// setns(2) needs CAP_SYS_ADMIN even into the namespace the thread
		// is already in; the daemon runs with CAP_NET_ADMIN only.
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("nsutil: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("nsutil: enter namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread ends with this goroutine.
			errc <- fmt.Errorf("nsutil: restore namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Cookie returns a string naming the network namespace ns for the lifetime
// of the boot: the kernel's netns cookie (never reused, unlike inode
// numbers), falling back to the namespace inode on kernels before 5.14.
// State under /run/ec2net is keyed by it so that several ec2net processes
// in different namespaces never share or inherit each other's state.
func Cookie(ns netns.NsHandle) (string, error) {
	var cookie uint64
	err := Do(ns, func() error {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		c, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
		if err != nil {
			return err
		}
		cookie = c
		return nil
	})
	if err == nil {
		return fmt.Sprintf("netns-%d", cookie), nil
	}
	var st unix.Stat_t
	if serr := unix.Fstat(int(ns), &st); serr != nil {
		return "", fmt.Errorf("nsutil: name namespace: %v / %v", err, serr)
	}
	return fmt.Sprintf("netns-ino-%d-%d", st.Dev, st.Ino), nil
}

var seq atomic.Uint64

// UniqueName returns a namespace name that is unique across processes and
// calls: prefix, pid and a sequence number. Short enough for link names.
func UniqueName(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, os.Getpid(), seq.Add(1))
}

// NewNamed creates a named network namespace (/run/netns/name) without
// leaving the caller's thread in it, and returns a handle to it.
func NewNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return netns.None(), err
	}
	defer orig.Close()
	_ = netns.DeleteNamed(name) // a previous run may have died
	h, err := netns.NewNamed(name)
	// NewNamed switched this thread into the new namespace: switch back
	// before anything else can run on it.
	if serr := netns.Set(orig); serr != nil {
		panic("nsutil: cannot return to the original namespace: " + serr.Error())
	}
	if err != nil {
		return netns.None(), err
	}
	if err := Do(h, func() error { return bringUpLoopback() }); err != nil {
		h.Close()
		_ = netns.DeleteNamed(name)
		return netns.None(), err
	}
	return h, nil
}

// DeleteNamed removes a named namespace; missing is not an error.
func DeleteNamed(name string) error {
	err := netns.DeleteNamed(name)
	if err != nil && (os.IsNotExist(err) || strings.Contains(err.Error(), "no such file")) {
		return nil
	}
	return err
}

func bringUpLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// IsCurrent reports whether ns is the calling thread's network namespace
// (same device and inode).
func IsCurrent(ns netns.NsHandle) bool {
	if !ns.IsOpen() {
		return false
	}
	var a, b unix.Stat_t
	if unix.Fstat(int(ns), &a) != nil || unix.Stat("/proc/thread-self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// ForNetlink is the handle to give vishvananda/netlink's *At functions and
// subscription options: netns.None() (no setns at all) when ns is the
// current namespace, so that a process with only CAP_NET_ADMIN (the
// systemd unit) can use them; ns otherwise.
func ForNetlink(ns netns.NsHandle) netns.NsHandle {
	if IsCurrent(ns) {
		return netns.None()
	}
	return ns
}
