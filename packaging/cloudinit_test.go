package packaging

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
)

const userDataPath = "packaging/cloud-init/user-data.yaml"

func readUserData(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, userDataPath))
	must(t, err)
	return string(data)
}

// cloudInitSchema runs "cloud-init schema" on userData with Debian's
// cloud-init, chrooted into the cached root that has it (cloud-init is not
// installed on the test machine: it would run at that machine's next boot).
func cloudInitSchema(t *testing.T, root, userData string) (string, error) {
	t.Helper()
	f := filepath.Join(root, "root/user-data.yaml")
	must(t, os.WriteFile(f, []byte(userData), 0o644))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return command(ctx, nil, "chroot", root, "cloud-init", "schema", "--config-file", "/root/user-data.yaml")
}

// The example user data is valid for cloud-init's schema, and the check
// can fail: a broken copy is rejected.
func TestUserDataSchema(t *testing.T) {
	nstest.RequireRoot(t)
	root := overlayRoot(t, "cloud-init")
	ud := readUserData(t)
	out, err := cloudInitSchema(t, root, ud)
	if err != nil {
		t.Fatalf("cloud-init schema rejects %s: %v", userDataPath, err)
	}
	version, _ := command(context.Background(), nil, "chroot", root, "cloud-init", "--version")
	t.Logf("cloud-init schema (%s): %s", strings.TrimSpace(version), strings.TrimSpace(out))

	broken := strings.Replace(ud, "bootcmd:\n", "bootcmd:\n  - {7: [x]}\n", 1)
	if out, err := cloudInitSchema(t, root, broken); err == nil {
		t.Errorf("cloud-init schema accepted a broken bootcmd:\n%s", out)
	}
}

// The user data, run by a real cloud-init (Debian's, NoCloud data source)
// in a Debian booted under systemd-nspawn inside a simulated VPC, twice:
//   - first boot: the configuration drop-in is written before the package
//     is installed and before the first "ec2net apply", which configures
//     the ENI attached at launch and honours the drop-in's exclusion; the
//     boot completes (bootcmd runs in cloud-init.service, ordered before
//     sysinit.target, where a blocking "systemctl start" in the package's
//     postinst would deadlock the boot: ec2net.service comes after
//     sysinit.target) and the service is enabled and active;
//   - second boot (the configuration removed from the kernel before, as a
//     reboot would): the first-boot script does not run again, and the
//     service alone configures the ENI again.
func TestCloudInitUserData(t *testing.T) {
	nstest.RequireRoot(t)
	requireTools(t, "systemd-nspawn", "nsenter", "debootstrap")
	p := packages(t)
	root := overlayRoot(t, "cloud-init")

	excluded := vpcsim.ENISpec{Name: "eth2", MAC: "02:ec:20:00:06:03", ID: "eni-0e0000000000000603", Device: 2,
		SubnetIPv4: pkgSubnetA, IPv4: []netip.Addr{netip.MustParseAddr("100.64.1.30"), netip.MustParseAddr("100.64.1.31")}}
	vpc := vpcsim.NewForTest(t, "ec2pc")
	must(t, vpc.AddSubnet(pkgSubnetA, pkgSubnetA6))
	must(t, vpc.AddSubnet(pkgSubnetB, pkgSubnetB6))
	must(t, vpc.LaunchPrimary(pkgPrimary))
	must(t, vpc.Attach(pkgCold))
	must(t, vpc.Attach(excluded))
	nsh, err := vpc.Handle(vpc.Instance)
	must(t, err)
	nl, err := netlink.NewHandleAt(nsh)
	must(t, err)
	t.Cleanup(nl.Close)

	// The package where the user data's "base" points, under the name
	// make packages gives it; the drop-in's example exclusion made real.
	must(t, os.MkdirAll(filepath.Join(root, "root/pkgs"), 0o755))
	copyFile(t, p.Deb, filepath.Join(root, "root/pkgs/ec2net_"+goarch()+".deb"))
	ud := readUserData(t)
	ud = regexp.MustCompile(`(?m)^(\s+base=)\S+$`).ReplaceAllString(ud, "${1}file:///root/pkgs")
	ud = strings.Replace(ud, "# exclude-device-numbers = 3", "exclude-device-numbers = 2", 1)
	if !strings.Contains(ud, "base=file:///root/pkgs") || !strings.Contains(ud, "\n      exclude-device-numbers = 2\n") {
		t.Fatalf("could not point the user data at the test package or set the exclusion")
	}
	seed := filepath.Join(root, "var/lib/cloud/seed/nocloud")
	must(t, os.MkdirAll(seed, 0o755))
	must(t, os.WriteFile(filepath.Join(seed, "user-data"), []byte(ud), 0o644))
	must(t, os.WriteFile(filepath.Join(seed, "meta-data"), []byte("instance-id: i-0ec2net00000000001\nlocal-hostname: ec2net-test\n"), 0o644))
	// Only the NoCloud seed; cloud-init leaves the network (the simulated
	// instance's) alone.
	must(t, os.WriteFile(filepath.Join(root, "etc/cloud/cloud.cfg.d/05-ec2net-test.cfg"),
		[]byte("datasource_list: [NoCloud]\nnetwork: {config: disabled}\nlocale: false\n"), 0o644))

	// First boot.
	m := bootMachine(t, root, vpc.Instance) // fails if the boot hangs
	if b := m.unitProperty("cloud-init.service", "Before"); !strings.Contains(b, "sysinit.target") {
		t.Errorf("cloud-init.service is not ordered before sysinit.target here (Before=%s): the deadlock case is not covered", b)
	}
	m.mustExec("cloud-init status --wait >/dev/null || true")
	log1 := m.mustExec("cat /var/log/cloud-init-output.log")
	if !strings.Contains(log1, "ec2net user data: first boot") {
		t.Fatalf("the first-boot script did not run:\n%s\n%s", log1, m.mustExec("cloud-init status --long || true"))
	}
	if s := m.mustExec("dpkg-query -W -f '${Status}' ec2net"); s != "install ok installed" {
		t.Errorf("ec2net package: %q", s)
	}
	conf := m.mustExec("cat /etc/ec2net/ec2net.conf.d/50-user-data.conf")
	if !strings.Contains(conf, "\nexclude-device-numbers = 2\n") {
		t.Errorf("drop-in:\n%s", conf)
	}
	// The first apply configured the cold ENI itself (it prints its changes)
	// and knew the exclusion: nothing of the excluded ENI, ever.
	if !regexp.MustCompile(`(?m)^\+ .*`+regexp.QuoteMeta(pkgCold.IPv4[0].String())).MatchString(log1) ||
		!strings.Contains(log1, "ec2net apply: ") {
		t.Errorf("the first-boot ec2net apply did not configure %s:\n%s", pkgCold.Name, log1)
	}
	if strings.Contains(log1, excluded.IPv4[0].String()) || strings.Contains(log1, excluded.IPv4[1].String()) {
		t.Errorf("the first apply touched the excluded ENI %s (the configuration came too late?):\n%s", excluded.Name, log1)
	}
	waitFor(t, time.Minute, "ec2net.service active after the first boot", func() (bool, string) {
		s := m.unitProperty(unit, "ActiveState")
		return s == "active", s
	})
	if s := m.unitProperty(unit, "UnitFileState"); s != "enabled" {
		t.Errorf("after the first boot %s is %s", unit, s)
	}
	if !hasRule(nl, pkgCold.IPv4[0]) || hasAddr(nl, excluded.IPv4[1]) || hasRule(nl, excluded.IPv4[0]) {
		t.Errorf("after the first boot: cold ENI rule %v; excluded ENI secondary address %v, rule %v (want true, false, false)",
			hasRule(nl, pkgCold.IPv4[0]), hasAddr(nl, excluded.IPv4[1]), hasRule(nl, excluded.IPv4[0]))
	}
	probe(t, vpc, pkgCold.IPv4[0])
	t.Logf("CHECK first boot: drop-in written, package installed from %s, ec2net apply configured %s and left excluded %s alone; %s enabled and active",
		"file:///root/pkgs", pkgCold.Name, excluded.Name, unit)

	// As a reboot would: the kernel forgets ec2net's configuration.
	m.mustExec("systemctl stop " + unit + " && ec2net cleanup")
	if hasRule(nl, pkgCold.IPv4[0]) {
		t.Fatalf("ec2net cleanup left the rule for %s", pkgCold.IPv4[0])
	}
	m.powerOff()

	// Second boot: the same root (the overlay keeps its changes).
	m2 := bootMachine(t, root, vpc.Instance)
	m2.mustExec("cloud-init status --wait >/dev/null || true")
	log2 := m2.mustExec("cat /var/log/cloud-init-output.log")
	if n := strings.Count(log2, "ec2net user data: first boot"); n != 1 {
		t.Errorf("the first-boot script ran %d times over two boots, want 1:\n%s", n, log2)
	}
	if _, err := m2.exec("test -e /var/lib/cloud/instance/sem/ec2net_user_data"); err != nil {
		t.Errorf("the first-boot marker is missing: %v", err)
	}
	if n := strings.Count(log2, "ec2net apply: "); n != 1 {
		t.Errorf("ec2net apply ran %d times from user data over two boots, want 1 (the service covers later boots)", n)
	}
	waitFor(t, time.Minute, "the service to configure "+pkgCold.Name+" on the second boot", func() (bool, string) {
		s := m2.unitProperty(unit, "ActiveState")
		return s == "active" && hasRule(nl, pkgCold.IPv4[0]), s
	})
	if hasAddr(nl, excluded.IPv4[1]) || hasRule(nl, excluded.IPv4[0]) {
		t.Errorf("the service configured the excluded ENI %s on the second boot", excluded.Name)
	}
	probe(t, vpc, pkgCold.IPv4[0])
	t.Logf("CHECK second boot: first-boot script not run again (once in two boots), the service alone configured %s, %s still excluded",
		pkgCold.Name, excluded.Name)
}
