package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Running programs inside the simulator's namespaces needs no tool of the
// machine (no `ip netns exec`): Exec forks the child from a thread switched
// into the namespace, and Command, whose exec.Cmd the caller starts on any
// thread, starts this same binary (/proc/self/exe) as a tiny launcher that
// enters the namespace and executes the real program (see init below).
// Unlike `ip netns exec`, neither remounts /sys for the namespace: /sys
// still shows the caller's links. ec2net reads links through netlink only,
// never /sys; /proc/sys/net follows the namespace of the reading process,
// so sysctls are right.

// launcherArg0 marks a launcher process: argv is
// [launcherArg0, /run/netns/<ns>, resolved path, argv0, args...].
const launcherArg0 = "vpcsim-netns-exec"

func init() {
	if len(os.Args) >= 4 && os.Args[0] == launcherArg0 {
		launch(os.Args[1], os.Args[2], os.Args[3:])
	}
}

// launch enters the network namespace at nsPath and replaces the process
// with path. It runs during package initialisation, before main: the main
// goroutine is on the main thread, and exec keeps the calling thread's
// namespaces (the other threads of the runtime end with the exec).
func launch(nsPath, path string, argv []string) {
	runtime.LockOSThread()
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "vpcsim: run %s in %s: %v\n", path, filepath.Base(nsPath), err)
		os.Exit(127)
	}
	fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		fail(err)
	}
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		fail(err)
	}
	unix.Close(fd)
	fail(syscall.Exec(path, argv, os.Environ()))
}

// Exec runs argv inside namespace ns and returns its combined output.
func (v *VPC) Exec(ns string, argv ...string) (string, error) {
	return v.ExecContext(context.Background(), ns, argv...)
}

// ExecContext is Exec bounded by ctx.
func (v *VPC) ExecContext(ctx context.Context, ns string, argv ...string) (string, error) {
	h, err := v.Handle(ns)
	if err != nil {
		return "", err
	}
	if len(argv) == 0 {
		return "", errors.New("vpcsim: empty command")
	}
	if err := lookPath(argv[0]); err != nil {
		return "", err
	}
	out, err := execIn(ctx, h, argv...)
	if err != nil {
		return out, fmt.Errorf("%s (in %s): %w", strings.Join(argv, " "), ns, err)
	}
	return out, nil
}

// Command prepares argv to run inside namespace ns, in the namespace's
// network stack (as `ip netns exec` does, but without it and without
// remounting /sys: see the top of this file). The caller sets stdio,
// starts and waits as with any exec.Cmd (e.g. for a daemon); the started
// process is argv itself (Process.Pid is its pid, signals reach it). The
// process must keep the capabilities to enter a namespace
// (SysProcAttr.Credential would drop them: run a wrapper such as setpriv
// as argv instead).
func (v *VPC) Command(ns string, argv ...string) (*exec.Cmd, error) {
	return v.CommandContext(context.Background(), ns, argv...)
}

// CommandContext is Command with a context that kills the process.
func (v *VPC) CommandContext(ctx context.Context, ns string, argv ...string) (*exec.Cmd, error) {
	if _, err := v.Handle(ns); err != nil {
		return nil, err
	}
	if len(argv) == 0 {
		return nil, errors.New("vpcsim: empty command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if cmd.Err != nil {
		// Start reports the lookup error, with the package to install when
		// it is a tool we know.
		cmd.Err = withPackageHint(argv[0], cmd.Err)
		return cmd, nil
	}
	path := cmd.Path
	cmd.Path = "/proc/self/exe"
	cmd.Args = append([]string{launcherArg0, filepath.Join("/run/netns", ns), path}, argv...)
	return cmd, nil
}

// execIn runs argv from a thread switched into h: the child inherits the
// thread's network namespace. Cheaper than a launcher, for commands that
// run to completion while the caller waits.
func execIn(ctx context.Context, h netns.NsHandle, argv ...string) (string, error) {
	var out []byte
	err := nsutil.Do(h, func() error {
		var err error
		out, err = exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// toolPackages names the Debian/Ubuntu package of tools tests commonly run
// through Exec (the simulator itself runs none).
var toolPackages = map[string]string{
	"ip": "iproute2", "bridge": "iproute2", "ss": "iproute2", "tc": "iproute2",
	"nft": "nftables", "ping": "iputils-ping", "iptables": "iptables",
	"nc": "netcat-openbsd", "socat": "socat", "tcpdump": "tcpdump",
}

// lookPath checks that name can be run, naming the package to install
// when it is missing.
func lookPath(name string) error {
	if _, err := exec.LookPath(name); err != nil {
		return withPackageHint(name, err)
	}
	return nil
}

func withPackageHint(name string, err error) error {
	if pkg, ok := toolPackages[filepath.Base(name)]; ok {
		return fmt.Errorf("vpcsim: %s is not installed (Debian/Ubuntu: apt-get install %s): %w", name, pkg, err)
	}
	return err
}
