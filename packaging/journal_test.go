package packaging

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/logging"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/ec2net/ec2net/netconf/nsutil/nstest"
	"github.com/vishvananda/netlink"
)

// TestJournalFields runs the packaged service under a real systemd and
// journald: its entries carry INTERFACE=, ENI_ID=, MAC= and a stable
// MESSAGE_ID= (so `journalctl -u ec2net INTERFACE=eth2` works), an attach
// and a detach are logged at info, nothing at err priority, and status
// reads the daemon's runtime file; the metrics file is readable by
// everyone.
func TestJournalFields(t *testing.T) {
	nstest.RequireRoot(t)
	requireTools(t, "systemd-nspawn", "nsenter", "debootstrap")
	p := packages(t)
	root := overlayRoot(t)
	vpc := vpcsim.NewForTest(t, "ec2jr")
	must(t, vpc.AddSubnet(pkgSubnetA, pkgSubnetA6))
	must(t, vpc.AddSubnet(pkgSubnetB, pkgSubnetB6))
	must(t, vpc.LaunchPrimary(pkgPrimary))
	nsh, err := vpc.Handle(vpc.Instance)
	must(t, err)
	nl, err := netlink.NewHandleAt(nsh)
	must(t, err)
	t.Cleanup(nl.Close)
	copyFile(t, p.Deb, filepath.Join(root, "root/ec2net-1.deb"))
	m := bootMachine(t, root, vpc.Instance)
	m.mustExec("dpkg -i /root/ec2net-1.deb")
	waitFor(t, 30*time.Second, "the service to be active", func() (bool, string) {
		s := m.unitProperty(unit, "ActiveState")
		return s == "active", s
	})

	must(t, vpc.Attach(pkgHot))
	waitFor(t, 20*time.Second, "the service to configure "+pkgHot.Name, func() (bool, string) {
		return hasRule(nl, pkgHot.IPv4[1]), "no rule yet"
	})
	out := m.mustExec("ec2net status")
	if !strings.Contains(out, "daemon: running (pid") || !strings.Contains(out, "last IMDS read") {
		t.Errorf("status does not read the daemon's runtime file:\n%s", out)
	}
	// The metrics file is readable by a user that is not root (the
	// node_exporter textfile collector's), under the hardened unit.
	waitFor(t, 10*time.Second, "the metrics file", func() (bool, string) {
		out, err := m.exec("setpriv --reuid=65534 --regid=65534 --clear-groups sh -c 'cat /run/ec2net/metrics/*.prom'")
		return err == nil && strings.Contains(out, `ec2net_enis{state="configured"} 2`), out
	})
	must(t, vpc.Detach(pkgHot.MAC))
	waitFor(t, 20*time.Second, "the detached ENI's rules to go", func() (bool, string) {
		return !hasRule(nl, pkgHot.IPv4[1]), "rule still there"
	})
	waitFor(t, 10*time.Second, "the detach to be logged", func() (bool, string) {
		out, _ := m.exec("journalctl -u " + unit + " -o cat --no-pager MESSAGE_ID=" + logging.MsgLinkRemoved)
		return strings.Contains(out, "link removed"), out
	})

	entries := journalEntries(t, m)
	configured, detached := false, false
	for _, e := range entries {
		if e["INTERFACE"] != pkgHot.Name {
			continue
		}
		switch e["MESSAGE_ID"] {
		case logging.MsgConfigured:
			configured = configured || (e["ENI_ID"] == pkgHot.ID && e["MAC"] == pkgHot.MAC && e["PRIORITY"] == "6" &&
				e["CHANGE"] != "" && e["SYSLOG_IDENTIFIER"] == "ec2net")
		case logging.MsgLinkRemoved:
			detached = e["MAC"] == pkgHot.MAC && e["PRIORITY"] == "6"
		}
	}
	if !configured || !detached {
		t.Errorf("journal entries of %s: configured with ENI_ID/MAC/CHANGE at info %v, detach at info %v; entries:\n%s",
			pkgHot.Name, configured, detached, m.mustExec("journalctl -u "+unit+" -o verbose --no-pager | tail -n 120"))
	}
	byInterface := m.mustExec("journalctl -u " + unit + " -o cat --no-pager INTERFACE=" + pkgHot.Name)
	if !strings.Contains(byInterface, "configured") || strings.Contains(byInterface, pkgPrimary.IPv4[0].String()+" ") {
		t.Errorf("journalctl INTERFACE=%s:\n%s", pkgHot.Name, byInterface)
	}
	if errs := strings.TrimSpace(m.mustExec("journalctl -u " + unit + " -p err -q -o cat --no-pager")); errs != "" {
		t.Errorf("entries at err priority or worse (an attach and a detach need no person):\n%s", errs)
	}
	t.Logf("CHECK journald: %d entries; INTERFACE/ENI_ID/MAC/MESSAGE_ID present; attach and detach at info; none at err", len(entries))
}

// journalEntries returns the unit's entries as field maps (journalctl -o
// json: one object per line; a field sent several times or as binary is
// not a string and is skipped).
func journalEntries(t *testing.T, m *machine) []map[string]string {
	t.Helper()
	out := m.mustExec("journalctl -u " + unit + " -o json --no-pager")
	var entries []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var raw map[string]any
		if err := json.Unmarshal([]byte(line), &raw); err != nil {
			t.Fatalf("journalctl -o json line %q: %v", line, err)
		}
		e := map[string]string{}
		for k, v := range raw {
			if s, ok := v.(string); ok {
				e[k] = s
			}
		}
		entries = append(entries, e)
	}
	return entries
}
