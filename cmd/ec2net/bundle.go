package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/daemon"
	"golang.org/x/sys/unix"
)

// writeBundle writes the support tarball of `ec2net doctor --bundle`.
// Nothing secret goes in: ec2net never stores the IMDS token and never
// reads user data; the journal lines are ec2net's own; the configuration
// is ec2net's (it holds no credentials). The file is created 0600: the
// addresses and MACs it lists are the owner's business.
func writeBundle(ctx context.Context, path string, e *env, r *doctorReport) error {
	var files []bundleFile
	add := func(name string, b []byte) { files = append(files, bundleFile{name, b}) }
	addJSON := func(name string, v any) {
		b, _ := json.MarshalIndent(v, "", "  ")
		add(name, append(b, '\n'))
	}
	var text bytes.Buffer
	printFindings(&text, r.Findings)
	add("README.txt", []byte(bundleReadme))
	add("doctor.txt", text.Bytes())
	addJSON("doctor.json", r)
	addJSON("status.json", r.Status)
	add("config.txt", []byte("# the configuration ec2net used (file and flags): "+config.DefaultPath+"\n\n"+config.Render(e.cfg)))
	add("versions.txt", versions())
	for _, c := range bundleCommands {
		add(c.file, runForBundle(ctx, c.argv...))
	}
	for _, f := range []struct{ name, path string }{
		{"daemon.json", daemon.RuntimeFile(e.rec.StateDir())},
		{"metrics.prom", daemon.MetricsFile(e.rec.StateDir())},
	} {
		if b, err := os.ReadFile(f.path); err == nil {
			add(f.name, b)
		} else {
			add(f.name, []byte("not read: "+err.Error()+"\n"))
		}
	}
	return writeTarGz(path, files)
}

type bundleFile struct {
	name string
	data []byte
}

const bundleReadme = `ec2net support bundle (ec2net doctor --bundle)

doctor.txt, doctor.json   every finding, with what to do
status.json               ec2net status --json: each ENI, each address's path
rules.txt, routes.txt     ip rule / ip route of every table, both families
addrs.txt, links.txt      ip addr, ip -d link
sysctl.txt                rp_filter and accept_ra of every link
journal.txt               the last 1000 lines of ec2net's journal
daemon.json, metrics.prom what the daemon publishes
config.txt, versions.txt  the configuration used; ec2net, kernel and OS versions

Not included: the IMDS token (ec2net never stores it), user data (ec2net
never reads it), credentials of any kind.
`

// bundleCommands are the kernel's and the journal's views, as an engineer
// would type them.
var bundleCommands = []struct {
	file string
	argv []string
}{
	{"rules.txt", []string{"sh", "-c", "ip -4 rule show; echo; ip -6 rule show"}},
	{"routes.txt", []string{"sh", "-c", "ip -4 route show table all; echo; ip -6 route show table all"}},
	{"addrs.txt", []string{"ip", "addr", "show"}},
	{"links.txt", []string{"ip", "-d", "link", "show"}},
	{"sysctl.txt", []string{"sh", "-c", "grep -H . /proc/sys/net/ipv4/conf/*/rp_filter /proc/sys/net/ipv6/conf/*/accept_ra 2>&1"}},
	{"journal.txt", []string{"journalctl", "-u", "ec2net", "-n", "1000", "--no-pager", "-o", "short-iso"}},
}

// runForBundle runs a command with a timeout and returns its output, or
// why it could not run: a missing tool is recorded, not fatal.
func runForBundle(ctx context.Context, argv ...string) []byte {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		out = append(out, []byte(fmt.Sprintf("\n(%s: %v)\n", strings.Join(argv, " "), err))...)
	}
	return out
}

func versions() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "ec2net %s (%s %s/%s)\n", version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		fmt.Fprintf(&b, "kernel %s %s\n", unix.ByteSliceToString(u.Release[:]), unix.ByteSliceToString(u.Version[:]))
	}
	if osr, err := os.ReadFile("/etc/os-release"); err == nil {
		b.WriteString("\n/etc/os-release:\n")
		b.Write(osr)
	}
	return []byte(b.String())
}

// writeTarGz writes the files into path (replacing it atomically).
func writeTarGz(path string, files []bundleFile) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	dir := "ec2net-bundle-" + time.Now().UTC().Format("20060102T150405Z")
	for _, bf := range files {
		hdr := &tar.Header{Name: dir + "/" + bf.name, Mode: 0o600, Size: int64(len(bf.data)), ModTime: time.Now()}
		if err := tw.WriteHeader(hdr); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(bf.data); err != nil {
			f.Close()
			return err
		}
	}
	for _, c := range []interface{ Close() error }{tw, gz, f} {
		if err := c.Close(); err != nil {
			return err
		}
	}
	return os.Rename(f.Name(), path)
}
