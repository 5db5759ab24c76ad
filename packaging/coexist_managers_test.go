package packaging

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// manager is one network manager configuration of the coexistence
// matrix: how it is set up in the container's root before boot and how
// each event is made to happen.
type manager struct {
	name string
	// unit is enabled (offline, in the overlay) before boot.
	unit string
	// files are written into the root before boot (path -> content);
	// "{MAC0}" is replaced by the primary ENI's MAC.
	files map[string]string
	// coldplug and hotplug stand in for udev, which does not run in the
	// container: ifupdown's allow-hotplug interfaces are raised by its
	// udev helper (ifupdown-hotplug runs "ifup --allow=hotplug IFACE"
	// when systemd is absent; with systemd its ifup@.service would bind
	// to a device unit that udev-less containers never have). networkd
	// and NetworkManager see links from netlink directly.
	hotplug string // shell, %s = link name; "" = nothing to do
	// Event commands in the container.
	restart, reload, reconfigure string
	// reloadConf makes the manager read its own configuration again
	// without a restart (for drop-ins installed at run time).
	reloadConf string
	// dhcpLostWindow is how long the DHCP-lost event is watched: long
	// enough for the manager's own DHCP timeout to fire.
	dhcpLostWindow time.Duration
}

// netplanEth0 is what netplan renders from cloud-init's network config
// on Ubuntu for the primary ENI only (matched by MAC and name).
const netplanEth0 = `[Match]
MACAddress={MAC0}
Name=eth0

[Network]
DHCP=yes
LinkLocalAddressing=ipv6

[DHCP]
RouteMetric=100
UseMTU=true
`

// al2023All is amazon-ec2-net-utils' 80-ec2.network, which matches every
// ENI by driver (ena, ixgbevf, vif); the simulator's ENIs are veths, so
// it matches by name here.
const al2023All = `[Match]
Name=eth*

[Link]
MTUBytes=9001

[Network]
DHCP=yes
IPv6DuplicateAddressDetection=0
LLMNR=no
DNSDefaultRoute=yes

[DHCPv4]
UseHostname=no
UseDNS=yes
UseNTP=yes
UseDomains=yes

[DHCPv6]
UseHostname=no
UseDNS=yes
UseNTP=yes
WithoutRA=solicit
`

// ifupdownAll is ifupdown with allow-hotplug and DHCP per ENI, as
// Debian's cloud-ifupdown-helper writes for every NIC.
const ifupdownAll = `auto lo
iface lo inet loopback

allow-hotplug eth0
iface eth0 inet dhcp
iface eth0 inet6 dhcp

allow-hotplug eth1
iface eth1 inet dhcp

allow-hotplug eth2
iface eth2 inet dhcp

allow-hotplug eth3
iface eth3 inet dhcp
`

var managers = map[string]manager{
	"networkd-eth0": {
		name: "systemd-networkd, eth0-only .network (Ubuntu netplan)",
		unit: "systemd-networkd.service",
		files: map[string]string{
			"etc/systemd/network/10-netplan-eth0.network": netplanEth0,
		},
		restart:        "systemctl restart systemd-networkd",
		reload:         "networkctl reload",
		reconfigure:    "networkctl reconfigure eth0",
		reloadConf:     "networkctl reload",
		dhcpLostWindow: 8 * time.Second,
	},
	"networkd-all": {
		name: "systemd-networkd, .network matching every ENI (AL2023 80-ec2.network)",
		unit: "systemd-networkd.service",
		files: map[string]string{
			"etc/systemd/network/80-ec2.network": al2023All,
		},
		restart:        "systemctl restart systemd-networkd",
		reload:         "networkctl reload",
		reconfigure:    "networkctl reconfigure eth0 eth1",
		dhcpLostWindow: 8 * time.Second,
	},
	"networkmanager": {
		name:    "NetworkManager, default configuration (automatic wired connections)",
		unit:    "NetworkManager.service",
		restart: "systemctl restart NetworkManager",
		reload:  "nmcli general reload",
		// reapply fails on a device NM does not manage (with the
		// drop-in): that is fine, the event is what NM does.
		reconfigure: "nmcli device reapply eth0; nmcli device reapply eth1 || true",
		reloadConf:  "nmcli general reload conf",
		// ipv4.dhcp-timeout is 45 s: the activation of an ENI without a
		// DHCP answer fails then, and NM removes its addresses.
		dhcpLostWindow: 50 * time.Second,
	},
	"ifupdown": {
		name: "ifupdown + isc-dhcp-client, allow-hotplug per ENI",
		unit: "networking.service",
		files: map[string]string{
			"etc/network/interfaces.d/ec2": ifupdownAll,
		},
		hotplug:        "ifup --allow=hotplug %s",
		restart:        "systemctl restart networking",
		reload:         "ifup -a --read-environment",
		reconfigure:    "ifdown eth1; ifup eth1",
		dhcpLostWindow: 8 * time.Second,
	},
}

// writeFiles writes a manager's files into root.
func writeFiles(t *testing.T, root string, files map[string]string, mac0 string) {
	t.Helper()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(strings.ReplaceAll(content, "{MAC0}", mac0)), 0o644))
	}
}

// coexistRoot returns the cached root with every manager installed (made
// by coexist-root.sh on first use, about a minute after nspawn-root.sh's).
func coexistRoot(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := command(ctx, nil, "bash", "packaging/coexist-root.sh")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("made the coexistence root in %v (cached for later runs)", d.Round(time.Second))
	}
	return lastLine(out)
}

// coexistOverlay mounts a writable overlay over the coexistence root for
// one cell; unmounted when the test ends.
func coexistOverlay(t testing.TB) string {
	t.Helper()
	lower := coexistRoot(t)
	dir := t.TempDir()
	upper, work, merged := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "merged")
	for _, d := range []string{upper, work, merged} {
		must(t, os.Mkdir(d, 0o755))
	}
	opts := "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Fatalf("mount overlay on %s: %v", merged, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(merged, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", merged, err)
		}
	})
	return merged
}
