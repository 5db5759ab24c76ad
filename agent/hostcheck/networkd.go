package hostcheck

import (
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// systemd-networkd (coexistence.md): with ManageForeignRoutingPolicyRules
// and ManageForeignRoutes at their default (yes) it deletes every rule and
// route it did not make (all of ec2net's) whenever it starts or
// reconfigures a link; with a .network that matches secondary ENIs
// (AL2023's 80-ec2.network, netplan `match: driver`) it also DHCPs them,
// deletes ec2net's table routes and addresses there and adds default
// routes through them in main at the primary's metric.

var networkdDropIns = []string{"/usr/lib/systemd/networkd.conf.d", "/usr/local/lib/systemd/networkd.conf.d",
	"/run/systemd/networkd.conf.d", "/etc/systemd/networkd.conf.d"}

var networkDirs = []string{"/usr/lib/systemd/network", "/lib/systemd/network", "/usr/local/lib/systemd/network",
	"/run/systemd/network", "/etc/systemd/network"}

func networkd(h *Host) []Finding {
	if !h.running("systemd-networkd") {
		return nil
	}
	var out []Finding
	vals := iniValues(h.confFiles("/etc/systemd/networkd.conf", networkdDropIns...), "Network")
	var on []string
	for _, k := range []string{"ManageForeignRoutingPolicyRules", "ManageForeignRoutes"} {
		if v, set := vals[k]; !set || yes(v) {
			on = append(on, k+"=yes")
		}
	}
	if len(on) > 0 {
		out = append(out, Finding{Severity: Problem, Check: "networkd",
			Text: "systemd-networkd runs with " + strings.Join(on, " and ") + " (its defaults): each restart of systemd-networkd " +
				"and each `networkctl reconfigure` deletes every rule and route it did not make, ec2net's included " +
				"(ec2net restores them, but secondary addresses lose traffic meanwhile)",
			Fix: "install /etc/systemd/networkd.conf.d/ec2net.conf with [Network] ManageForeignRoutingPolicyRules=no and " +
				"ManageForeignRoutes=no (the ec2net package ships it in /usr/lib/systemd/networkd.conf.d); " +
				"it takes effect when systemd-networkd next starts"})
	} else {
		out = append(out, Finding{Severity: OK, Check: "networkd",
			Text: "systemd-networkd runs and leaves foreign rules and routes alone (ManageForeign*=no)"})
	}
	files := h.networkFiles()
	for _, l := range h.secondaries() {
		file, managed := h.networkdManages(l, files)
		if !managed {
			continue
		}
		out = append(out, Finding{Severity: Problem, Check: "networkd", Link: l.Name,
			Text: "systemd-networkd manages " + l.Name + " (" + file + "): on every reload or reconfigure it runs DHCP there, " +
				"deletes ec2net's table routes and addresses on it, and adds a default route through " + l.Name +
				" in main that can carry the primary's own traffic (dropped by the VPC)",
			Fix: "restrict that file's [Match] to the primary ENI (MACAddress=<its MAC>), or add /etc/systemd/network/" +
				"09-ec2net-" + l.Name + ".network with [Match] MACAddress=" + l.MAC + " and [Link] Unmanaged=yes, then networkctl reload"})
	}
	return out
}

// networkdManages says whether networkd manages a link, from its runtime
// state (/run/systemd/netif/links/<ifindex>) when it has one, else from
// the first .network file that matches the link.
func (h *Host) networkdManages(l Link, files []string) (string, bool) {
	if l.Index > 0 {
		if b, err := os.ReadFile(h.path("/run/systemd/netif/links/" + strconv.Itoa(l.Index))); err == nil {
			state, file := "", ""
			for _, line := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(line, "ADMIN_STATE="); ok {
					state = v
				}
				if v, ok := strings.CutPrefix(line, "NETWORK_FILE="); ok {
					file = v
				}
			}
			switch state {
			case "", "unmanaged", "pending", "linger":
				return "", false
			}
			return file, true
		}
	}
	for _, f := range files {
		m := iniValues([]string{f}, "Match")
		if !matchesLink(m, l) {
			continue
		}
		if yes(iniValues([]string{f}, "Link")["Unmanaged"]) {
			return "", false
		}
		return strings.TrimPrefix(f, h.Root), true
	}
	return "", false
}

// networkFiles lists the .network files in networkd's order: by file
// name, /etc overriding /run overriding /usr/lib for the same name.
func (h *Host) networkFiles() []string {
	byName := map[string]string{}
	for _, d := range networkDirs {
		ents, _ := os.ReadDir(h.path(d))
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".network") {
				byName[e.Name()] = h.path(filepath.Join(d, e.Name()))
			}
		}
	}
	ns := make([]string, 0, len(byName))
	for n := range byName {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = byName[n]
	}
	return out
}

// matchesLink applies a [Match] section: every key given must match; a
// key's value is a list of patterns, any of which matches ("!" before the
// list inverts it). An empty section matches every link.
func matchesLink(m map[string]string, l Link) bool {
	for k, v := range m {
		var subject string
		switch k {
		case "Name", "OriginalName":
			subject = l.Name
		case "MACAddress", "PermanentMACAddress":
			subject = strings.ToLower(l.MAC)
			v = strings.ToLower(v)
		case "Driver":
			subject = l.Driver
		case "Type":
			subject = "ether"
		default:
			continue // Host, Virtualization, KernelCommandLine…: not about the link
		}
		if !matchList(v, subject) {
			return false
		}
	}
	return true
}

func matchList(v, subject string) bool {
	neg := strings.HasPrefix(v, "!")
	v = strings.TrimPrefix(v, "!")
	any := false
	for _, p := range strings.Fields(v) {
		if ok, _ := filepath.Match(p, subject); ok {
			any = true
		}
	}
	if subject == "" {
		any = false // an unknown driver matches no pattern
	}
	return any != neg
}
