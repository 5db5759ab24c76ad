package hostcheck

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakeHost is a file system root with the given files (content "->x"
// makes a symlink to x) and processes.
func fakeHost(t *testing.T, files map[string]string, procs ...string) Host {
	t.Helper()
	root := t.TempDir()
	for p, c := range files {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(c, "->"); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range procs {
		full := filepath.Join(root, "proc", strconv.Itoa(100+i), "comm")
		_ = os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(p+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Host{Root: root, SysRoot: root, ENIs: []Link{
		{Name: "eth0", Index: 2, MAC: "02:00:00:00:0a:00", Primary: true, MTU: 9001, Driver: "ena"},
		{Name: "eth1", Index: 3, MAC: "02:00:00:00:0a:01", MTU: 9001, Driver: "ena"},
	}}
}

func find(fs []Finding, check string, sev Severity) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Check == check && f.Severity == sev {
			out = append(out, f)
		}
	}
	return out
}

func TestNetworkd(t *testing.T) {
	everyENI := "[Match]\nName=eth*\n\n[Network]\nDHCP=yes\n"
	h := fakeHost(t, map[string]string{"/usr/lib/systemd/network/80-ec2.network": everyENI}, "systemd-network")
	fs := Managers(h)
	if p := find(fs, "networkd", Problem); len(p) != 2 || !strings.Contains(p[0].Text, "ManageForeignRoutingPolicyRules=yes") ||
		p[1].Link != "eth1" || !strings.Contains(p[1].Text, "80-ec2.network") || !strings.Contains(p[1].Fix, "Unmanaged=yes") {
		t.Errorf("default networkd with a .network for every ENI: %+v", fs)
	}
	// The drop-in, and a .network for the primary only.
	h = fakeHost(t, map[string]string{
		"/usr/lib/systemd/networkd.conf.d/ec2net.conf": "[Network]\nManageForeignRoutingPolicyRules=no\nManageForeignRoutes=no\n",
		"/etc/systemd/network/10-eth0.network":         "[Match]\nMACAddress=02:00:00:00:0a:00\n[Network]\nDHCP=yes\n",
	}, "systemd-network")
	if fs := Managers(h); len(find(fs, "networkd", Problem)) != 0 || len(find(fs, "networkd", OK)) != 1 {
		t.Errorf("networkd with the drop-in, primary only: %+v", fs)
	}
	// An /etc drop-in turning it back on wins over the packaged one.
	h = fakeHost(t, map[string]string{
		"/usr/lib/systemd/networkd.conf.d/ec2net.conf": "[Network]\nManageForeignRoutingPolicyRules=no\nManageForeignRoutes=no\n",
		"/etc/systemd/networkd.conf.d/zz-admin.conf":   "[Network]\nManageForeignRoutes=yes\n",
	}, "systemd-network")
	if p := find(Managers(h), "networkd", Problem); len(p) != 1 || !strings.Contains(p[0].Text, "ManageForeignRoutes=yes") ||
		strings.Contains(p[0].Text, "RoutingPolicyRules=yes") {
		t.Errorf("later drop-in: %+v", p)
	}
	// The runtime state says unmanaged: that wins over the file match.
	h = fakeHost(t, map[string]string{"/usr/lib/systemd/network/80-ec2.network": everyENI,
		"/run/systemd/netif/links/3": "ADMIN_STATE=unmanaged\n"}, "systemd-network")
	if p := find(Managers(h), "networkd", Problem); len(p) != 1 {
		t.Errorf("runtime state unmanaged: %+v", p)
	}
	// Not running: nothing to say.
	h = fakeHost(t, map[string]string{"/etc/systemd/network/99-all.network": everyENI})
	if fs := Managers(h); len(fs) != 0 {
		t.Errorf("networkd not running: %+v", fs)
	}
}

func TestNetworkManager(t *testing.T) {
	h := fakeHost(t, map[string]string{"/etc/NetworkManager/NetworkManager.conf": "[main]\nplugins=ifupdown,keyfile\n"}, "NetworkManager")
	if p := find(Managers(h), "networkmanager", Problem); len(p) != 1 || p[0].Link != "eth1" || !strings.Contains(p[0].Fix, "no-auto-default") {
		t.Errorf("default NetworkManager: %+v", p)
	}
	h = fakeHost(t, map[string]string{"/usr/lib/NetworkManager/conf.d/ec2net.conf": "[main]\nno-auto-default=except:interface-name:eth0,except:interface-name:ens5\n"},
		"NetworkManager")
	if fs := Managers(h); len(find(fs, "networkmanager", OK)) != 1 {
		t.Errorf("with the packaged drop-in: %+v", fs)
	}
	l := Link{Name: "eth1", MAC: "02:00:00:00:0a:01", Driver: "ena"}
	for list, want := range map[string]bool{"": false, "*": true, "except:interface-name:eth0": true, "except:interface-name:eth*": false,
		"interface-name:eth1": true, "interface-name:=eth": false, "02:00:00:00:0A:01": true, "mac:02:00:00:00:0a:02": false,
		"driver:ena": true, "*,except:mac:02:00:00:00:0a:01": false} {
		if got := deviceSpecMatches(list, l); got != want {
			t.Errorf("deviceSpecMatches(%q) = %v, want %v", list, got, want)
		}
	}
}

func TestIfupdownEc2NetUtilsCloudInitCNI(t *testing.T) {
	h := fakeHost(t, map[string]string{
		"/sbin/ifup":                        "",
		"/etc/network/interfaces":           "auto lo\niface lo inet loopback\nsource /etc/network/interfaces.d/*\n",
		"/etc/network/interfaces.d/eth0":    "auto eth0\niface eth0 inet dhcp\n",
		"/etc/network/interfaces.d/eth1":    "allow-hotplug eth1\niface eth1 inet dhcp\n",
		"/usr/bin/setup-policy-routes":      "",
		"/etc/netplan/50-cloud-init.yaml":   "network:\n  ethernets:\n    eth1:\n      routing-policy:\n      - from: 100.64.2.10\n        table: 101\n",
		"/etc/cni/net.d/10-aws.conflist":    "{}",
		"/etc/systemd/system/unrelated.txt": "",
	})
	h.LinkNames = []string{"lo", "eth0", "eth1", "eni0123456789a", "enia1b2c3d4e5f"}
	fs := Managers(h)
	if p := find(fs, "ifupdown", Problem); len(p) != 1 || p[0].Link != "eth1" || !strings.Contains(p[0].Text, "interfaces.d/eth1") {
		t.Errorf("ifupdown: %+v", p)
	}
	if p := find(fs, "ec2-net-utils", Problem); len(p) != 1 {
		t.Errorf("ec2-net-utils: %+v", fs)
	}
	if p := find(fs, "cloud-init", Problem); len(p) != 1 || !strings.Contains(p[0].Fix, "apply_full_imds_network_config: false") {
		t.Errorf("cloud-init: %+v", p)
	}
	if p := find(fs, "vpc-cni", Problem); len(p) != 1 || !strings.Contains(p[0].Text, "2 pod veths") || !strings.Contains(p[0].Text, "10-aws.conflist") {
		t.Errorf("vpc-cni: %+v", p)
	}
	// Each turned off the documented way.
	h = fakeHost(t, map[string]string{
		"/usr/bin/setup-policy-routes":                "",
		"/etc/systemd/system/policy-routes@.service":  "->/dev/null",
		"/etc/netplan/50-cloud-init.yaml":             "network:\n  ethernets:\n    eth1:\n      routing-policy: []\n",
		"/etc/cloud/cloud.cfg.d/99-ec2net.cfg":        "datasource:\n  Ec2:\n    apply_full_imds_network_config: false\n",
		"/etc/network/interfaces":                     "auto eth0\niface eth0 inet dhcp\n",
		"/usr/sbin/ifup":                              "",
		"/etc/systemd/system/multi-user.target.wants": "",
	})
	for _, f := range Managers(h) {
		if f.Severity == Problem {
			t.Errorf("after the fixes: %+v", f)
		}
	}
}

func TestKernelChecks(t *testing.T) {
	h := fakeHost(t, map[string]string{
		"/proc/sys/net/ipv4/conf/all/rp_filter":  "0\n",
		"/proc/sys/net/ipv4/conf/eth0/rp_filter": "2\n",
		"/proc/sys/net/ipv4/conf/eth1/rp_filter": "1\n",
	})
	h.ENIs[1].MTU = 1500
	h.MainDefaults = []Default{
		{Family: 4, Link: "eth0", Metric: 100, Proto: "dhcp"},
		{Family: 4, Link: "eth1", Metric: 101, Proto: "dhcp"}, // NetworkManager's: above eth0's, harmless
		{Family: 6, Link: "eth0", Metric: 1024, Proto: "ra"},
		{Family: 6, Link: "eth1", Metric: 1024, Proto: "ra"},
	}
	fs := Kernel(h)
	if n := find(fs, "rp_filter", Note); len(n) != 1 || n[0].Link != "eth1" {
		t.Errorf("rp_filter: %+v", fs)
	}
	if n := find(fs, "mtu", Note); len(n) != 1 || n[0].Link != "eth1" || !strings.Contains(n[0].Fix, "mtu = auto") {
		t.Errorf("mtu: %+v", n)
	}
	if p := find(fs, "main-default", Problem); len(p) != 1 || !strings.Contains(p[0].Text, "IPv6") || !strings.Contains(p[0].Fix, "accept_ra=0") {
		t.Errorf("main defaults: %+v", p)
	}
	h.SysRoot = t.TempDir() // no /proc/sys
	if u := find(Kernel(h), "rp_filter", Unchecked); len(u) != 1 {
		t.Errorf("unreadable rp_filter: %+v", Kernel(h))
	}
}
