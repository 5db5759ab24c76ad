package hostcheck

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ec2net/ec2net/netconf"
)

// ifupdown: an `auto`/`allow-hotplug`/`iface` stanza for a secondary ENI
// makes `ifdown ethN` and `systemctl restart networking` flush its
// addresses and set it down, and its dhclient race ec2net on hot-plug.
func ifupdown(h *Host) []Finding {
	if !h.exists("/sbin/ifup") && !h.exists("/usr/sbin/ifup") {
		return nil
	}
	stanzas := map[string]string{} // link -> "file: line"
	h.readInterfaces("/etc/network/interfaces", stanzas, 0)
	var out []Finding
	for _, l := range h.secondaries() {
		where, ok := stanzas[l.Name]
		if !ok {
			continue
		}
		out = append(out, Finding{Severity: Problem, Check: "ifupdown", Link: l.Name,
			Text: "ifupdown configures " + l.Name + " (" + where + "): `ifdown " + l.Name + "` and `systemctl restart networking` " +
				"flush its addresses and set it down, and its DHCP client races ec2net when the ENI is attached",
			Fix: "remove the " + l.Name + " stanzas (keep the primary's); on Debian cloud images also " +
				"/etc/udev/rules.d/75-cloud-ifupdown.rules, which writes them for every new NIC"})
	}
	return out
}

// readInterfaces collects the interfaces named by stanzas of an
// interfaces(5) file and the files it sources.
func (h *Host) readInterfaces(file string, into map[string]string, depth int) {
	if depth > 4 {
		return
	}
	f, err := os.Open(h.path(file))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 || strings.HasPrefix(fs[0], "#") {
			continue
		}
		switch fs[0] {
		case "auto", "allow-hotplug", "allow-auto":
			for _, name := range fs[1:] {
				into[name] = file + ":" + strconv.Itoa(n) + " " + fs[0]
			}
		case "iface":
			into[fs[1]] = file + ":" + strconv.Itoa(n) + " " + strings.Join(fs, " ")
		case "source", "source-directory":
			pattern := fs[1]
			if fs[0] == "source-directory" {
				pattern = filepath.Join(pattern, "*")
			}
			if !filepath.IsAbs(pattern) {
				pattern = filepath.Join(filepath.Dir(file), pattern)
			}
			matches, _ := filepath.Glob(h.path(pattern))
			for _, m := range matches {
				h.readInterfaces(strings.TrimPrefix(m, h.Root), into, depth+1)
			}
		}
	}
}

// amazon-ec2-net-utils drives systemd-networkd with the same tables and
// rule priorities as ec2net; its package also gives eth0 its DHCP on
// AL2023 (80-ec2.network).
func ec2NetUtils(h *Host) []Finding {
	var found []string
	for _, p := range []string{"/usr/lib/systemd/system/policy-routes@.service", "/lib/systemd/system/policy-routes@.service",
		"/usr/bin/setup-policy-routes", "/usr/lib/systemd/network/80-ec2.network"} {
		if h.exists(p) {
			found = append(found, p)
		}
	}
	if len(found) == 0 {
		return nil
	}
	masked := false
	if t, err := os.Readlink(h.path("/etc/systemd/system/policy-routes@.service")); err == nil && t == "/dev/null" {
		masked = true
	}
	if masked {
		return []Finding{{Severity: OK, Check: "ec2-net-utils",
			Text: "amazon-ec2-net-utils is installed with its per-ENI units masked: ec2net alone configures secondary ENIs"}}
	}
	return []Finding{{Severity: Problem, Check: "ec2-net-utils",
		Text: "amazon-ec2-net-utils is installed (" + strings.Join(found, ", ") + "): it configures the same route tables and " +
			"rule priorities through systemd-networkd; two managers on one ENI undo each other",
		Fix: "let ec2net take over: systemctl mask policy-routes@.service refresh-policy-routes@.service refresh-policy-routes@.timer " +
			"(the ec2net package does this; keep 80-ec2.network, which gives eth0 its DHCP), or remove ec2net"}}
}

// cloud-init's EC2 datasource renders policy routing for every NIC IMDS
// lists (apply_full_imds_network_config, on by default): netplan
// routing-policy entries, or networkd [RoutingPolicyRule] sections.
func cloudInit(h *Host) []Finding {
	if h.cloudInitOff() {
		return nil
	}
	var where []string
	for _, pat := range []string{"/etc/netplan/*.yaml", "/run/systemd/network/*netplan*.network"} {
		matches, _ := filepath.Glob(h.path(pat))
		for _, m := range matches {
			b, err := os.ReadFile(m)
			if err == nil && (strings.Contains(string(b), "routing-policy:") || strings.Contains(string(b), "[RoutingPolicyRule]")) {
				where = append(where, strings.TrimPrefix(m, h.Root))
			}
		}
	}
	if len(where) == 0 {
		return nil
	}
	return []Finding{{Severity: Problem, Check: "cloud-init",
		Text: "cloud-init rendered multi-NIC policy routing (" + strings.Join(where, ", ") + "): its rules and tables compete " +
			"with ec2net's, and the network manager that applies them also manages the secondary ENIs",
		Fix: "turn it off in the user data (or /etc/cloud/cloud.cfg.d/99-ec2net.cfg): `datasource: {Ec2: {apply_full_imds_network_config: false}}`; " +
			"cloud-init then renders only the primary at the next boot"}}
}

// cloudInitOffRE is the user data or cloud.cfg setting that turns
// cloud-init's multi-NIC routing off.
var cloudInitOffRE = regexp.MustCompile(`apply_full_imds_network_config:\s*(false|False|no)`)

func (h *Host) cloudInitOff() bool {
	files, _ := filepath.Glob(h.path("/etc/cloud/cloud.cfg.d/*.cfg"))
	files = append(files, h.path("/etc/cloud/cloud.cfg"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && cloudInitOffRE.Match(b) {
			return true
		}
	}
	return false
}

// The VPC CNI (EKS) hands secondary addresses of the ENIs to pods: ec2net
// putting them on the host captures the pods' traffic.
func vpcCNI(h *Host) []Finding {
	var signs []string
	if m, _ := filepath.Glob(h.path("/etc/cni/net.d/*aws*")); len(m) > 0 {
		signs = append(signs, strings.TrimPrefix(m[0], h.Root))
	}
	for _, p := range []string{"aws-k8s-agent", "aws-node"} {
		if h.running(p) {
			signs = append(signs, "process "+p)
		}
	}
	veths := 0
	for _, n := range h.LinkNames {
		if netconf.IsPodVeth(n) {
			veths++
		}
	}
	if veths > 0 {
		signs = append(signs, strconv.Itoa(veths)+" pod veths (eni…)")
	}
	if len(signs) == 0 {
		return nil
	}
	if h.PrimaryOnly {
		return []Finding{{Severity: OK, Check: "vpc-cni",
			Text: "VPC CNI signs (" + strings.Join(signs, ", ") + "): ec2net configures the primary ENI only (secondary-enis)"}}
	}
	return []Finding{{Severity: Problem, Check: "vpc-cni",
		Text: "this looks like an EKS node running the VPC CNI (" + strings.Join(signs, ", ") + "): the CNI gives the ENIs' " +
			"secondary addresses to pods, and ec2net putting them on the host would capture the pods' traffic",
		Fix: "leave the CNI's ENIs to it: secondary-enis = none (or auto) in /etc/ec2net/ec2net.conf, or exclude them " +
			"(exclude-device-numbers, exclude-eni-ids)"}}
}
