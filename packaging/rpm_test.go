package packaging

import (
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"
)

// The rpm's cpio payload holds relative paths only ("./usr/bin/ec2net"),
// so unpacking it as rpmlint and people do (rpm2cpio | cpio -idm) writes
// into the current directory, never into the machine's root (GNU cpio
// writes absolute names where they say, as nfpm's rpms had them).
func TestRPMPayloadIsRelative(t *testing.T) {
	requireTools(t, "rpm2cpio", "cpio", "rpm")
	p := packages(t)
	dir := t.TempDir()
	listing := unpackRPM(t, p.RPM, dir)
	if len(listing) == 0 {
		t.Fatal("empty cpio listing")
	}
	for _, name := range listing {
		if !strings.HasPrefix(name, "./") || strings.Contains(name, "/../") {
			t.Errorf("cpio member %q is not relative to the current directory", name)
		}
	}
	for _, f := range strings.Fields(mustRun(t, "rpm", "-qlp", p.RPM)) {
		if _, err := os.Lstat(filepath.Join(dir, f)); err != nil {
			t.Errorf("after rpm2cpio | cpio -idm in %s: %v", dir, err)
		}
	}
	t.Logf("rpm2cpio | cpio -idm: %d members, all ./relative, all unpacked inside the scratch directory", len(listing))
}

// unpackRPM unpacks rpm into dir with rpm2cpio | cpio -idm run in dir,
// and returns the member names (cpio -t).
func unpackRPM(t *testing.T, rpm, dir string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list := exec.CommandContext(ctx, "sh", "-c", `rpm2cpio "$1" | cpio -t --quiet`, "sh", rpm)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("rpm2cpio | cpio -t: %v", err)
	}
	unpack := exec.CommandContext(ctx, "sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet`, "sh", rpm)
	unpack.Dir = dir
	if out, err := unpack.CombinedOutput(); err != nil {
		t.Fatalf("rpm2cpio | cpio -idm: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// rpmlint reports nothing but the findings packaging/rpmlint.toml filters,
// each of which is explained there and in packaging/README.md; and every
// filter is still needed (it matches a finding of the unfiltered run).
func TestRPMLint(t *testing.T) {
	requireTools(t, "rpmlint")
	p := packages(t)
	cfg := filepath.Join(repoRoot, "packaging/rpmlint.toml")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := command(ctx, nil, "rpmlint", "-c", cfg, p.RPM)
	finding := regexp.MustCompile(`(?m)^ec2net[^:]*: [EW]: .*$`)
	for _, f := range finding.FindAllString(out, -1) {
		t.Errorf("rpmlint: %s (fix it, or filter it in packaging/rpmlint.toml with a reason)", f)
	}
	if err != nil {
		t.Errorf("rpmlint failed: %v", err)
	}

	// The same configuration without its Filters: each filter must match.
	data, err := os.ReadFile(cfg)
	must(t, err)
	head, filters, ok := strings.Cut(string(data), "Filters = [")
	if !ok {
		t.Fatal("rpmlint.toml has no Filters")
	}
	bare := filepath.Join(t.TempDir(), "bare.toml")
	must(t, os.WriteFile(bare, []byte(head), 0o644))
	raw, _ := command(ctx, nil, "rpmlint", "-c", bare, p.RPM)
	all := finding.FindAllString(raw, -1)
	n := 0
	for _, m := range regexp.MustCompile(`(?m)^\s*'([^']+)',`).FindAllStringSubmatch(filters, -1) {
		n++
		re := regexp.MustCompile(m[1])
		used := false
		for _, f := range all {
			used = used || re.MatchString(f)
		}
		if !used {
			t.Errorf("rpmlint filter %q matches no finding any more: remove it from rpmlint.toml and README.md", m[1])
		}
	}
	t.Logf("rpmlint: no finding left; %d filters, each matching one of the %d unfiltered findings", n, len(all))
}

// `make packages` builds arm64 next to amd64 (Go cross-compiles): here the
// arm64 pair, with the right architecture fields, a static aarch64
// binary, and the stable file names next to the versioned ones.
func TestArm64Packages(t *testing.T) {
	requireTools(t, "dpkg-deb", "rpm", "rpm2cpio", "cpio")
	dir := filepath.Join(scratch, "arm64")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	if out, err := command(ctx, []string{"EC2NET_ARCHES=arm64"}, "bash", "packaging/build.sh", dir); err != nil {
		t.Fatal(err, out)
	}
	t.Logf("built the arm64 .deb and .rpm in %v", time.Since(start).Round(time.Millisecond))
	for _, name := range []string{"ec2net_arm64.deb", "ec2net.aarch64.rpm"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("stable name: %v", err)
		}
	}
	deb := filepath.Join(dir, "ec2net_arm64.deb")
	if a := strings.TrimSpace(mustRun(t, "dpkg-deb", "-f", deb, "Architecture")); a != "arm64" {
		t.Errorf("deb Architecture %q, want arm64", a)
	}
	rpm := filepath.Join(dir, "ec2net.aarch64.rpm")
	if a := strings.TrimSpace(mustRun(t, "rpm", "-qp", "--qf", "%{ARCH}", rpm)); a != "aarch64" {
		t.Errorf("rpm ARCH %q, want aarch64", a)
	}
	x := t.TempDir()
	mustRun(t, "dpkg-deb", "-x", deb, x)
	checkStaticELF(t, filepath.Join(x, "usr/bin/ec2net"), elf.EM_AARCH64)
	y := t.TempDir()
	unpackRPM(t, rpm, y)
	checkStaticELF(t, filepath.Join(y, "usr/bin/ec2net"), elf.EM_AARCH64)
}

func checkStaticELF(t *testing.T, path string, machine elf.Machine) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Machine != machine {
		t.Errorf("%s: machine %v, want %v", path, f.Machine, machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("%s has a program interpreter: not a static binary", path)
		}
	}
}

// The package file names that the docs and the user data cite are the
// stable names build.sh writes (ec2net_<debarch>.deb, ec2net.<rpmarch>.rpm)
// for the architectures `make packages` builds.
func TestDocsCiteBuiltPackageNames(t *testing.T) {
	built := map[string]bool{}
	for _, a := range []string{"amd64", "arm64"} {
		built["ec2net_"+a+".deb"] = true
		built["ec2net."+rpmArch(a)+".rpm"] = true
	}
	mk, err := os.ReadFile(filepath.Join(repoRoot, "Makefile"))
	must(t, err)
	if !regexp.MustCompile(`EC2NET_ARCHES\s*\??=\s*"?amd64 arm64`).Match(mk) {
		t.Errorf("the Makefile's packages target does not build amd64 and arm64")
	}
	name := regexp.MustCompile(`ec2net[_.][A-Za-z0-9_]+\.(deb|rpm)\b`)
	var cited []string
	for _, doc := range []string{"README.md", "packaging/README.md", "packaging/cloud-init/AMI.md",
		"packaging/cloud-init/user-data.yaml", "docs/TROUBLESHOOTING.md"} {
		data, err := os.ReadFile(filepath.Join(repoRoot, doc))
		must(t, err)
		for _, n := range name.FindAllString(string(data), -1) {
			cited = append(cited, doc+": "+n)
			if !built[n] {
				t.Errorf("%s cites %s, which make packages does not write (it writes %v)", doc, n, keys(built))
			}
		}
	}
	if len(cited) == 0 {
		t.Error("no document cites a package file name")
	}
	t.Logf("cited: %v", cited)
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
