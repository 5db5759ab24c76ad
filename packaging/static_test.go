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
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
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
		"./usr/share/doc/ec2net/TROUBLESHOOTING.md":                 "-rw-r--r--",
		"./usr/share/doc/ec2net/STATUS.md":                          "-rw-r--r--",
		"./usr/share/lintian/overrides/ec2net":                      "-rw-r--r--",
		"./usr/share/doc/ec2net/examples/cloud-init-user-data.yaml": "-rw-r--r--",
		"./etc/ec2net/ec2net.conf.d/":                               "drwxr-xr-x",
		"./usr/share/man/man5/ec2net.conf.5.gz":                     "-rw-r--r--",
		"./usr/share/bash-completion/completions/ec2net":            "-rw-r--r--",
		"./usr/share/zsh/vendor-completions/_ec2net":                "-rw-r--r--",
		"./usr/lib/systemd/networkd.conf.d/ec2net.conf":             "-rw-r--r--",
		"./usr/lib/NetworkManager/conf.d/ec2net.conf":               "-rw-r--r--",
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
	// Every directory a file lands in is in the archive too (dpkg owns
	// directories by listing them).
	for path := range got {
		if dir := "./" + filepath.Dir(strings.TrimSuffix(strings.TrimPrefix(path, "./"), "/")) + "/"; dir != "././" && got[dir] == "" {
			t.Errorf("deb: %s is in the archive but its directory %s is not", path, dir)
		}
	}
	t.Logf("dpkg-deb -c: %d entries, all %d expected present, every parent directory listed", len(got), len(want))

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
	sameFile(t, filepath.Join(dir, "usr/share/bash-completion/completions/ec2net"), filepath.Join(repoRoot, "packaging/completions/ec2net.bash"))

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

// What the .rpm contains: the same files, every directory it creates
// owned, the licence as %license, documentation and man pages as %doc,
// the configuration as %config(noreplace), and all three scriptlets.
func TestRPMContents(t *testing.T) {
	requireTools(t, "rpm")
	p := packages(t)
	list := strings.Fields(mustRun(t, "rpm", "-qlp", p.RPM))
	want := []string{
		"/etc/ec2net", "/etc/ec2net/ec2net.conf", "/etc/ec2net/ec2net.conf.d", "/usr/bin/ec2net",
		"/usr/lib/NetworkManager", "/usr/lib/NetworkManager/conf.d", "/usr/lib/NetworkManager/conf.d/ec2net.conf",
		"/usr/lib/systemd/networkd.conf.d", "/usr/lib/systemd/networkd.conf.d/ec2net.conf",
		"/usr/lib/systemd/system/ec2net.service",
		"/usr/share/bash-completion", "/usr/share/bash-completion/completions",
		"/usr/share/bash-completion/completions/ec2net",
		"/usr/share/doc/ec2net", "/usr/share/doc/ec2net/README.md", "/usr/share/doc/ec2net/STATUS.md", "/usr/share/doc/ec2net/TROUBLESHOOTING.md",
		"/usr/share/doc/ec2net/examples", "/usr/share/doc/ec2net/examples/cloud-init-user-data.yaml",
		"/usr/share/licenses/ec2net", "/usr/share/licenses/ec2net/LICENSE",
		"/usr/share/man/man5/ec2net.conf.5.gz", "/usr/share/man/man8/ec2net.8.gz",
		"/usr/share/zsh", "/usr/share/zsh/site-functions", "/usr/share/zsh/site-functions/_ec2net",
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
	docs := strings.Fields(mustRun(t, "rpm", "-qdp", p.RPM))
	sort.Strings(docs)
	wantDocs := []string{"/usr/share/doc/ec2net/README.md", "/usr/share/doc/ec2net/STATUS.md", "/usr/share/doc/ec2net/TROUBLESHOOTING.md",
		"/usr/share/doc/ec2net/examples/cloud-init-user-data.yaml",
		"/usr/share/man/man5/ec2net.conf.5.gz", "/usr/share/man/man8/ec2net.8.gz"}
	if !reflect.DeepEqual(docs, wantDocs) {
		t.Errorf("rpm -qdp (%%doc):\n got  %v\n want %v", docs, wantDocs)
	}
	flags := mustRun(t, "rpm", "-qp", "--qf", "[%{FILENAMES} %{FILEFLAGS:fflags}\n]", p.RPM)
	if !strings.Contains(flags, "/etc/ec2net/ec2net.conf cn") {
		t.Errorf("ec2net.conf is not %%config(noreplace):\n%s", flags)
	}
	// Every directory holding a packaged file is packaged or belongs to
	// the base system (filesystem, systemd, man-db on every distribution).
	owned := map[string]bool{}
	for _, f := range list {
		owned[f] = true
	}
	base := map[string]bool{"/etc": true, "/usr/bin": true, "/usr/lib": true, "/usr/lib/systemd": true, "/usr/lib/systemd/system": true, "/usr/share/doc": true,
		"/usr/share/licenses": true, "/usr/share/man/man5": true, "/usr/share/man/man8": true, "/usr/share": true}
	for _, f := range list {
		if d := filepath.Dir(f); !owned[d] && !base[d] {
			t.Errorf("rpm: directory %s (of %s) is neither owned by the package nor a base directory", d, f)
		}
	}
	scripts := mustRun(t, "rpm", "-qp", "--scripts", p.RPM)
	for _, s := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("rpm lacks a %s", s)
		}
	}
	meta := mustRun(t, "rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH} %{LICENSE}", p.RPM)
	t.Logf("rpm: %s, %d files and directories", meta, len(list))
	if want := "-1 " + rpmArch(goarch()) + " Apache-2.0"; !strings.HasSuffix(meta, want) {
		t.Errorf("rpm metadata %q, want suffix %q", meta, want)
	}
}

// lintian: no error and no warning at all; the findings that are
// intended are overridden in packaging/lintian-overrides (shipped in the
// package, explained in packaging/README.md), and every override is used.
func TestLintian(t *testing.T) {
	requireTools(t, "lintian")
	p := packages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := command(ctx, nil, "lintian", "--tag-display-limit", "0", "--show-overrides", "-I", p.Deb)
	var exit *exec.ExitError
	if err != nil && !errorAs(err, &exit) {
		t.Fatal(err)
	}
	tag := regexp.MustCompile(`^([EWIPXO]): ec2net[^:]*: (\S+)`)
	counts := map[string]int{}
	for _, line := range strings.Split(out, "\n") {
		m := tag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		counts[m[1]]++
		switch {
		case m[1] == "E" || m[1] == "W":
			t.Errorf("lintian: %s (fix it, or override it in packaging/lintian-overrides with a reason)", line)
		case m[2] == "unused-override" || m[2] == "mismatched-override":
			t.Errorf("lintian: %s: remove it from packaging/lintian-overrides", line)
		}
	}
	if counts["O"] == 0 {
		t.Errorf("lintian showed no overridden tag: are the overrides installed?\n%s", out)
	}
	t.Logf("lintian: %d errors, %d warnings, %d overridden (packaging/lintian-overrides), %d info", counts["E"], counts["W"], counts["O"], counts["I"])
}

// Installing into a throwaway root, as when baking an image in a chroot:
// the maintainer scripts run chrooted, enable the unit for the first boot
// (no systemd runs there, so nothing starts), and removal and purge undo
// exactly that. The same for the .rpm with rpm --root.
func TestInstallIntoRoot(t *testing.T) {
	nstest.RequireRoot(t)
	requireTools(t, "dpkg", "rpm")
	p := packages(t)
	root := overlayRoot(t)
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants/ec2net.service")
	conf := filepath.Join(root, "etc/ec2net/ec2net.conf")

	netUtils := fakeEC2NetUtils(t, root)
	mustRun(t, "dpkg", "--root="+root, "-i", p.Deb)
	netUtils.assertMasked(t, "dpkg --root -i")
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
	netUtils.assertUnmasked(t, "dpkg --root -r")
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
	netUtils.assertMasked(t, "rpm --root -i")
	if target, err := os.Readlink(wants); err != nil || !strings.HasSuffix(target, "/ec2net.service") {
		t.Errorf("rpm %%post did not enable the unit: %v", err)
	}
	mustRun(t, "rpm", "--root", root, "-U", "--nodeps", p.RPM2)
	netUtils.assertMasked(t, "rpm --root -U")
	if _, err := os.Lstat(wants); err != nil {
		t.Errorf("rpm upgrade disabled the unit: %v", err)
	}
	mustRun(t, "rpm", "--root", root, "-e", "--nodeps", "ec2net")
	netUtils.assertUnmasked(t, "rpm --root -e")
	if _, err := os.Lstat(wants); !os.IsNotExist(err) {
		t.Errorf("rpm -e left the unit enabled (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ec2net")); !os.IsNotExist(err) {
		t.Errorf("rpm -e left an unmodified /etc/ec2net (%v)", err)
	}
	t.Log("rpm --root -i: enabled; -U release 2: still enabled; -e: disabled, files gone")
	t.Log("amazon-ec2-net-utils: its udev rule and per-ENI units masked on install and upgrade, unmasked on removal; " +
		"80-ec2.network and the admin's own unit file untouched")
}

// ec2NetUtils is a stand-in for the amazon-ec2-net-utils package's files
// in a root (the files the maintainer scripts look for and mask), plus an
// administrator's own override of one unit, which must survive.
type ec2NetUtils struct {
	root      string
	masks     []string // what postinst must mask
	untouched map[string]string
}

func fakeEC2NetUtils(t *testing.T, root string) ec2NetUtils {
	t.Helper()
	files := map[string]string{
		"usr/lib/udev/rules.d/99-vpc-policy-routes.rules":       "SUBSYSTEM==\"net\", ACTION==\"add\", RUN+=\"/usr/bin/true\"\n",
		"usr/lib/systemd/system/policy-routes@.service":         "[Service]\nType=oneshot\nExecStart=/usr/bin/true\n",
		"usr/lib/systemd/system/refresh-policy-routes@.service": "[Service]\nType=oneshot\nExecStart=/usr/bin/true\n",
		"usr/lib/systemd/system/refresh-policy-routes@.timer":   "[Timer]\nOnUnitInactiveSec=60\n",
		"usr/lib/systemd/network/80-ec2.network":                "[Match]\nDriver=ena ixgbevf vif\n\n[Network]\nDHCP=yes\n",
		// The administrator's own version of one unit: not masked.
		"etc/systemd/system/refresh-policy-routes@.service": "[Service]\nType=oneshot\nExecStart=/usr/bin/true admin\n",
	}
	u := ec2NetUtils{root: root, untouched: map[string]string{}, masks: []string{
		"etc/udev/rules.d/99-vpc-policy-routes.rules",
		"etc/systemd/system/policy-routes@.service",
		"etc/systemd/system/refresh-policy-routes@.timer",
	}}
	for f, text := range files {
		p := filepath.Join(root, f)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(text), 0o644))
		if !strings.HasPrefix(f, "usr/lib/systemd/system/") && !strings.HasPrefix(f, "usr/lib/udev/") {
			u.untouched[f] = text
		}
	}
	return u
}

func (u ec2NetUtils) assertMasked(t *testing.T, when string) {
	t.Helper()
	for _, m := range u.masks {
		if target, err := os.Readlink(filepath.Join(u.root, m)); err != nil || target != "/dev/null" {
			t.Errorf("after %s: /%s is not masked (-> %q, %v)", when, m, target, err)
		}
	}
	u.assertUntouched(t, when)
}

func (u ec2NetUtils) assertUnmasked(t *testing.T, when string) {
	t.Helper()
	for _, m := range u.masks {
		if _, err := os.Lstat(filepath.Join(u.root, m)); !os.IsNotExist(err) {
			t.Errorf("after %s: the mask /%s is still there (%v)", when, m, err)
		}
	}
	u.assertUntouched(t, when)
}

func (u ec2NetUtils) assertUntouched(t *testing.T, when string) {
	t.Helper()
	for f, text := range u.untouched {
		if got, err := os.ReadFile(filepath.Join(u.root, f)); err != nil || string(got) != text {
			t.Errorf("after %s: /%s changed (%v)", when, f, err)
		}
	}
}
