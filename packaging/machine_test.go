package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
)

// machine is a Debian root booted with systemd-nspawn --boot: a real
// systemd as PID 1 of its own PID namespace, driven with
// nsenter -t <its init> -a. It lives in a network namespace the test made
// (the simulated instance), never the host's.
type machine struct {
	t      testing.TB
	root   string // host path of its root directory
	cmd    *exec.Cmd
	init   int // host PID of its systemd
	exited chan struct{}

	mu  sync.Mutex
	log bytes.Buffer // nspawn's output and the container's console
}

// bootMachine boots root inside the network namespace /run/netns/<netnsName>
// and waits until systemd reports running (or degraded). CAP_NET_ADMIN is
// added to nspawn's default capability set so the service can configure
// the instance namespace, as it would on a real instance. Powered off when
// the test ends.
func bootMachine(t testing.TB, root, netnsName string) *machine {
	t.Helper()
	start := time.Now()
	name := nsutil.UniqueName("ec2net-m")
	m := &machine{t: t, root: root, exited: make(chan struct{})}
	m.cmd = exec.Command("systemd-nspawn",
		"--directory="+root, "--boot", "--machine="+name,
		// read-only, not passive: a passive console's pseudo-TTY is read
		// by nobody, so once its buffer is full (cloud-init writes a lot
		// to the console) every write to /dev/console blocks, systemd's
		// own at shutdown included, and the container never halts.
		"--register=no", "--keep-unit", "--console=read-only",
		"--network-namespace-path=/run/netns/"+netnsName,
		"--capability=CAP_NET_ADMIN",
	)
	m.cmd.Stdout, m.cmd.Stderr = m, m
	// Its own process group, so that nothing aimed at the test's group
	// reaches it; it is stopped by PID below.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	t.Cleanup(m.powerOff)

	// The container's systemd is the child of nspawn whose command is
	// "systemd" (nspawn may briefly run a helper child first).
	waitFor(t, 10*time.Second, "the container's init process", func() (bool, string) {
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", m.output())
		default:
		}
		pid := m.cmd.Process.Pid
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		if err != nil {
			return false, err.Error()
		}
		for _, f := range strings.Fields(string(data)) {
			comm, err := os.ReadFile("/proc/" + f + "/comm")
			if err == nil && strings.TrimSpace(string(comm)) == "systemd" {
				m.init, _ = strconv.Atoi(f)
				return true, ""
			}
		}
		return false, "children of nspawn: " + string(data)
	})
	// Generous: with cloud-init, boot runs four Python stages, on a
	// machine that other tests load too.
	waitFor(t, 2*time.Minute, "systemd in the container to finish booting", func() (bool, string) {
		select {
		case <-m.exited:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", m.output())
		default:
		}
		out, _ := m.exec("systemctl is-system-running")
		state := strings.TrimSpace(out)
		return state == "running" || state == "degraded", state
	})
	if out, _ := m.exec("systemctl is-system-running"); strings.TrimSpace(out) == "degraded" {
		failed, _ := m.exec("systemctl --failed --no-legend")
		t.Logf("container booted degraded; failed units:\n%s", failed)
	}
	t.Logf("booted systemd (%s) in namespace %s in %v",
		strings.TrimSpace(m.mustExec("systemctl --version | head -n1")), netnsName, time.Since(start).Round(time.Millisecond))
	return m
}

func (m *machine) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.Write(p)
}

func (m *machine) output() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.log.String()
}

// exec runs a shell script inside the container (all its namespaces, its
// root) with a clean environment, and returns its combined output.
func (m *machine) exec(script string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nsenter", "-t", strconv.Itoa(m.init), "-a",
		"/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
		"/bin/sh", "-c", script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("in container: %s: %w\n%s", script, err, out)
	}
	return string(out), err
}

func (m *machine) mustExec(script string) string {
	m.t.Helper()
	out, err := m.exec(script)
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

// unitProperty reads one property of a unit (systemctl show -P).
func (m *machine) unitProperty(unit, prop string) string {
	m.t.Helper()
	return strings.TrimSpace(m.mustExec("systemctl show -P " + prop + " " + unit))
}

// powerOff asks nspawn to shut the container down (SIGTERM makes it send
// systemd the poweroff signal), and kills it if that takes too long.
func (m *machine) powerOff() {
	select {
	case <-m.exited:
		return
	default:
	}
	start := time.Now()
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		m.t.Logf("container powered off in %v", time.Since(start).Round(time.Millisecond))
	case <-time.After(20 * time.Second):
		// What ec2net must not do is hold up shutdown. The host's own
		// network manager may (ifupdown's ifdown -a waits for dhclient
		// to release each lease): that is noted, not failed.
		procs := m.processes()
		report := m.t.Errorf
		if !heldUpByEC2Net(procs) {
			report = m.t.Logf
		}
		report("container did not power off within 20 s; killing it. Its processes:\n%s\nconsole:\n%s", procs, m.output())
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
}

// heldUpByEC2Net reports whether an ec2net process is among those left
// (one per line, as processes lists them: pid, state, wait, command).
func heldUpByEC2Net(procs string) bool {
	for _, l := range strings.Split(procs, "\n") {
		for _, f := range strings.Fields(l) {
			if f == "ec2net" || strings.HasSuffix(f, "/ec2net") {
				return true
			}
		}
	}
	return false
}

// processes lists the container's processes as the host sees them (by
// its PID namespace), for a diagnosis when it does not power off.
func (m *machine) processes() string {
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", m.init))
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		if _, err := strconv.Atoi(d.Name()); err != nil {
			continue
		}
		if l, _ := os.Readlink("/proc/" + d.Name() + "/ns/pid"); l != ns {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + d.Name() + "/cmdline")
		stat, _ := os.ReadFile("/proc/" + d.Name() + "/stat")
		wchan, _ := os.ReadFile("/proc/" + d.Name() + "/wchan")
		fields := strings.Fields(string(stat))
		state := ""
		if len(fields) > 2 {
			state = fields[2]
		}
		fmt.Fprintf(&b, "%s %s %s %s\n", d.Name(), state, wchan, strings.ReplaceAll(string(cmd), "\x00", " "))
	}
	return b.String()
}

func TestHeldUpByEC2Net(t *testing.T) {
	dhclient := "30950 S hrtimer_nanosleep dhclient -4 -v -i -r -pf /run/dhclient.eth1.pid eth1 \n30756 S do_wait /sbin/ifdown -a --exclude=lo \n"
	if heldUpByEC2Net(dhclient) {
		t.Errorf("ifupdown's dhclient taken for ec2net")
	}
	for _, p := range []string{"412 S do_epoll_wait /usr/bin/ec2net run \n", "413 S futex_wait ec2net run --log-level debug \n"} {
		if !heldUpByEC2Net(dhclient + p) {
			t.Errorf("ec2net not seen in %q", p)
		}
	}
}
