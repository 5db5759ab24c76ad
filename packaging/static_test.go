package packaging

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/netconf/nsutil"
)

// The unit passes systemd-analyze verify silently with exposure <= 2.0,
// and check.sh really fails on a bad unit (a check that cannot fail proves
// nothing).
func TestUnitCheck(t *testing.T) {
	requireTools(t, "systemd-analyze", "man")
	out := mustRun(t, "bash", "systemd/check.sh")
	t.Logf("systemd/check.sh:\n%s", out)
	if !regexp.MustCompile(`exposure [0-9.]+ \(limit 2\.0\)`).MatchString(out) {
		t.Errorf("check.sh did not print the exposure")
	}

	unit, err := os.ReadFile(filepath.Join(repoRoot, "systemd/ec2net.service"))
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(t.TempDir(), "ec2net.service")
	if err := os.WriteFile(bad, bytes.Replace(unit, []byte("Type=notify"), []byte("Type=notfy"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	out, err = command(ctx, nil, "bash", "systemd/check.sh", bad)
	if err == nil || !strings.Contains(out, "Failed to parse service type") {
		t.Errorf("check.sh passed a unit with Type=notfy (err %v):\n%s", err, out)
	}
	out, err = command(ctx, nil, "bash", "systemd/check.sh", filepath.Join(repoRoot, "systemd/ec2net.service"), "1.0")
	if err == nil || !strings.Contains(out, "FAIL exposure") {
		t.Errorf("check.sh accepted an exposure above 1.0 (err %v):\n%s", err, out)
	}
}

// The packaged default configuration is exactly the built-in defaults,
// documents every key, and is what `ec2net defaults` prints after its
// header (so the conffile only changes when a default or a help text does,
// never with the version: dpkg would ask about it on every upgrade).
func TestDefaultConfig(t *testing.T) {
	path := filepath.Join(repoRoot, "packaging/ec2net.conf")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(bytes.NewReader(data), path, config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// Every line is a comment: parsing yields the base unchanged.
	if !reflect.DeepEqual(got, config.Config{}) {
		t.Errorf("ec2net.conf sets values; it should only document the defaults: %+v", got)
	}
	uncommented := regexp.MustCompile(`(?m)^# ([a-z-]+ = .*)$`).ReplaceAllString(string(data), "$1")
	got, err = config.Parse(strings.NewReader(uncommented), path+" (uncommented)", config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, config.Default()) {
		t.Errorf("the documented values are not the defaults:\n got  %+v\n want %+v", got, config.Default())
	}
	for _, k := range config.Keys() {
		if !regexp.MustCompile(`(?m)^# ` + k + ` =`).Match(data) {
			t.Errorf("key %s is not documented in ec2net.conf", k)
		}
	}
	if want := trimLines(config.Render(config.Default())); !strings.HasSuffix(string(data), want) {
		t.Errorf("ec2net.conf does not end with config.Render(config.Default()); regenerate it:\n%s", want)
	}
}

func trimLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}

// What the .deb contains, with modes; the unit and configuration are the
// repository's files; the binary runs and reports the version from git.
func TestDebContents(t *testing.T) {
	requireTools(t, "dpkg-deb", "git")
	p := packages(t)
	list := mustRun(t, "dpkg-deb", "-c", p.Deb)
	want := map[string]string{
		"./usr/bin/ec2net":                                          "-rwxr-xr-x",
		"./usr/lib/systemd/system/ec2net.service":                   "-rw-r--r--",
		"./etc/ec2net/":                                             "drwxr-xr-x",
		"./etc/ec2net/ec2net.conf":                                  "-rw-r--r--",
		"./usr/share/man/man8/ec2net.8.gz":                          "-rw-r--r--",
		"./usr/share/doc/ec2net/copyright":                          "-rw-r--r--",
		"./usr/share/doc/ec2net/changelog.Debian.gz":                "-rw-r--r--",
		"./usr/share/doc/ec2net/README.md":                          "-rw-r--r--",
		"./usr/share/lintian/overrides/ec2net":                      "-rw-r--r--",
		"./usr/share/doc/ec2net/examples/cloud-init-user-data.yaml": "-rw-r--r--",
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(list), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			continue
		}
		got[f[len(f)-1]] = f[0]
		if f[1] != "root/root" && f[1] != "0/0" {
			t.Errorf("%s is owned by %s, want root", f[len(f)-1], f[1])
		}
	}
	for path, mode := range want {
		if got[path] != mode {
			t.Errorf("deb: %s: mode %q, want %q", path, got[path], mode)
		}
	}
	t.Logf("dpkg-deb -c: %d entries, all %d expected present", len(got), len(want))

	info := mustRun(t, "dpkg-deb", "-I", p.Deb)
	for _, s := range []string{"postinst", "prerm", "postrm", "conffiles", "Package: ec2net", "Section: net"} {
		if !strings.Contains(info, s) {
			t.Errorf("dpkg-deb -I lacks %q:\n%s", s, info)
		}
	}
	dir := t.TempDir()
	mustRun(t, "dpkg-deb", "--ctrl-tarfile", p.Deb) // readable control archive
	mustRun(t, "dpkg-deb", "-e", p.Deb, filepath.Join(dir, "DEBIAN"))
	if c, _ := os.ReadFile(filepath.Join(dir, "DEBIAN/conffiles")); strings.TrimSpace(string(c)) != "/etc/ec2net/ec2net.conf" {
		t.Errorf("conffiles = %q, want /etc/ec2net/ec2net.conf", c)
	}
	mustRun(t, "dpkg-deb", "-x", p.Deb, dir)
	sameFile(t, filepath.Join(dir, "usr/lib/systemd/system/ec2net.service"), filepath.Join(repoRoot, "systemd/ec2net.service"))
	sameFile(t, filepath.Join(dir, "etc/ec2net/ec2net.conf"), filepath.Join(repoRoot, "packaging/ec2net.conf"))

	out := mustRun(t, filepath.Join(dir, "usr/bin/ec2net"), "version")
	sha := strings.TrimSpace(mustRun(t, "git", "rev-parse", "--short=7", "HEAD"))
	if !strings.Contains(out, sha) && !regexp.MustCompile(`ec2net v?[0-9]+\.[0-9]+`).MatchString(out) {
		t.Errorf("packaged ec2net version printed %q: want the git version (commit %s)", out, sha)
	}
	t.Logf("packaged binary: %s", strings.TrimSpace(out))

	// Release 2 sorts after release 1: the upgrade test relies on it.
	v2 := strings.TrimSpace(mustRun(t, "dpkg-deb", "-f", p.Deb2, "Version"))
	mustRun(t, "dpkg", "--compare-versions", v2, "gt", p.Version)
	if !regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*-1$`).MatchString(p.Version) {
		t.Errorf("deb version %q is not upstream-revision with a digit first", p.Version)
	}
}

func sameFile(t *testing.T, got, want string) {
	t.Helper()
	g, err := os.ReadFile(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(g, w) {
		t.Errorf("%s differs from %s", got, want)
	}
}

// What the .rpm contains: the same files, the licence as %license, the
// configuration as %config(noreplace), and all three scriptlets.
func TestRPMContents(t *testing.T) {
	requireTools(t, "rpm")
	p := packages(t)
	list := strings.Fields(mustRun(t, "rpm", "-qlp", p.RPM))
	want := []string{
		"/etc/ec2net", "/etc/ec2net/ec2net.conf", "/usr/bin/ec2net",
		"/usr/lib/systemd/system/ec2net.service", "/usr/share/doc/ec2net/README.md",
		"/usr/share/doc/ec2net/examples/cloud-init-user-data.yaml",
		"/usr/share/licenses/ec2net/LICENSE", "/usr/share/man/man8/ec2net.8.gz",
	}
	sort.Strings(list)
	if !reflect.DeepEqual(list, want) {
		t.Errorf("rpm -qlp:\n got  %v\n want %v", list, want)
	}
	if c := strings.TrimSpace(mustRun(t, "rpm", "-qcp", p.RPM)); c != "/etc/ec2net/ec2net.conf" {
		t.Errorf("rpm -qcp = %q", c)
	}
	if l := strings.TrimSpace(mustRun(t, "rpm", "-qLp", p.RPM)); l != "/usr/share/licenses/ec2net/LICENSE" {
		t.Errorf("rpm -qLp = %q", l)
	}
	flags := mustRun(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", p.RPM)
	if !strings.Contains(flags, "/etc/ec2net/ec2net.conf cn") {
		t.Errorf("ec2net.conf is not %%config(noreplace):\n%s", flags)
	}
	scripts := mustRun(t, "rpm", "-qp", "--scripts", p.RPM)
	for _, s := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("rpm lacks a %s", s)
		}
	}
	meta := mustRun(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH} %{LICENSE}", p.RPM)
	t.Logf("rpm: %s, %d files", meta, len(list))
	if !strings.HasSuffix(meta, "-1 x86_64 Apache-2.0") && !strings.Contains(meta, "Apache-2.0") {
		t.Errorf("rpm metadata %q", meta)
	}
}

// lintian: no errors; only the warnings explained here.
var lintianAllowed = map[string]string{
	// The maintainer scripts are shared by the .deb and the .rpm, so they
	// call systemctl rather than Debian's deb-systemd-helper/invoke.
	"maintainer-script-calls-systemctl": "shared deb/rpm scripts",
	// A generated one-entry changelog; the package is not uploaded to Debian.
	"initial-upload-closes-no-bugs": "not a Debian upload",
	// nfpm writes the package's licence as a control field.
	"unknown-field": "License field from nfpm",
}

func TestLintian(t *testing.T) {
	requireTools(t, "lintian")
	p := packages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := command(ctx, nil, "lintian", "--tag-display-limit", "0", p.Deb)
	var exit *exec.ExitError
	if err != nil && !errorAs(err, &exit) {
		t.Fatal(err)
	}
	tag := regexp.MustCompile(`^([EWIXO]): ec2net[^:]*: (\S+)`)
	var errors, warnings int
	for _, line := range strings.Split(out, "\n") {
		m := tag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch m[1] {
		case "E":
			errors++
			t.Errorf("lintian error: %s", line)
		case "W":
			warnings++
			if _, ok := lintianAllowed[m[2]]; !ok {
				t.Errorf("lintian warning not explained in lintianAllowed: %s", line)
			}
		}
	}
	t.Logf("lintian: %d errors, %d warnings (allowed: %d tags)", errors, warnings, len(lintianAllowed))
}

// Installing into a throwaway root, as when baking an image in a chroot:
// the maintainer scripts run chrooted, enable the unit for the first boot
// (no systemd runs there, so nothing starts), and removal and purge undo
// exactly that. The same for the .rpm with rpm --root.
func TestInstallIntoRoot(t *testing.T) {
	nsutil.RequireRoot(t)
	requireTools(t, "dpkg", "rpm")
	p := packages(t)
	root := overlayRoot(t)
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ec2net.service")
	conf := filepath.Join(root, "etc/ec2net/ec2net.conf")

	mustRun(t, "dpkg", "--root="+root, "-i", p.Deb)
	for _, f := range []string{"usr/bin/ec2net", "usr/lib/systemd/system/ec2net.service", "etc/ec2net/ec2net.conf"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("dpkg --root -i: %v", err)
		}
	}
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/ec2net.service") {
		t.Errorf("postinst did not enable the unit for first boot: %v", err)
	}
	t.Log("dpkg --root -i: files installed, unit enabled for first boot")

	mustRun(t, "dpkg", "--root="+root, "-r", "ec2net")
	if _, err := os.Lstat(wants); !os.IsNotExist(err) {
		t.Errorf("dpkg -r left the unit enabled (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/ec2net")); !os.IsNotExist(err) {
		t.Errorf("dpkg -r left the binary (%v)", err)
	}
	if _, err := os.Stat(conf); err != nil {
		t.Errorf("dpkg -r removed the conffile: %v", err)
	}
	mustRun(t, "dpkg", "--root="+root, "-P", "ec2net")
	if _, err := os.Stat(filepath.Join(root, "etc/ec2net")); !os.IsNotExist(err) {
		t.Errorf("dpkg -P left /etc/ec2net (%v)", err)
	}
	t.Log("dpkg --root -r: disabled, conffile kept; -P: /etc/ec2net gone")

	mustRun(t, "rpm", "--root", root, "--initdb")
	mustRun(t, "rpm", "--root", root, "-i", "--nodeps", p.RPM)
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/ec2net.service") {
		t.Errorf("rpm %%post did not enable the unit: %v", err)
	}
	mustRun(t, "rpm", "--root", root, "-U", "--nodeps", p.RPM2)
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("rpm upgrade disabled the unit: %v", err)
	}
	mustRun(t, "rpm", "--root", root, "-e", "--nodeps", "ec2net")
	if _, err := os.Lstat(wants); !os.IsNotExist(err) {
		t.Errorf("rpm -e left the unit enabled (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ec2net")); !os.IsNotExist(err) {
		t.Errorf("rpm -e left an unmodified /etc/ec2net (%v)", err)
	}
	t.Log("rpm --root -i: enabled; -U release 2: still enabled; -e: disabled, files gone")
}
