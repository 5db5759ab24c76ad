package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
	"go.uber.org/zap"
)

// systemd-networkd with a .network matching every ENI (Amazon Linux
// 2023's 80-ec2.network: Driver=ena, DHCP=yes; netplan's match: driver)
// runs DHCP on the secondary ENIs too and adds their default routes to
// main at the primary's metric: the primary's own traffic then leaves
// through a secondary ENI and the VPC drops it (measured: 30 of 30 probes
// lost). While ec2net manages the secondary ENIs it therefore writes, in
// /run (so an AMI baked from the instance carries no instance's names),
// a .network sorted before such files that leaves every ENI but the
// primary unmanaged, and has networkd reload. A .network an administrator
// wrote for a secondary ENI with a lower number still wins (networkd uses
// the first match).
const (
	networkdRunDir   = "/run/systemd/network"
	networkdUnmanage = "70-ec2net-secondary-enis.network"
	networkdStateDir = "/run/systemd/netif" // networkd's own: it runs here
)

// eniDrivers are the drivers of ENIs (EC2NET_TEST_ENI_DRIVERS stands in
// for them in the simulator, whose ENIs are veths).
func eniDrivers() string {
	if d := os.Getenv("EC2NET_TEST_ENI_DRIVERS"); d != "" {
		return d
	}
	return "ena ixgbevf vif"
}

// networkdFile is the file's content for a primary link name; "" means
// there should be none.
func networkdFile(primary string, manageSecondaries bool) string {
	if primary == "" || !manageSecondaries {
		return ""
	}
	return fmt.Sprintf(`# Written by ec2net: ENIs other than the primary (%s) are ec2net's, so
# systemd-networkd leaves them alone. Removed when ec2net stops managing
# them; see ec2net(8).
[Match]
Driver=%s
Name=!%s

[Link]
Unmanaged=yes
`, primary, eniDrivers(), primary)
}

// networkd keeps the file in step with the primary's name. Only the
// packaged unit turns it on (EC2NET_MANAGE_NETWORKD=1): /run/systemd is the
// host's, and an `ec2net run` started by hand in another network
// namespace must never rewrite the host's networkd configuration.
type networkd struct {
	on      bool
	dir     string // networkdRunDir (tests: elsewhere)
	state   string // networkdStateDir
	reload  func(ctx context.Context) error
	written string // the content last written ("" none)
	failed  bool   // warned that it cannot be written
}

func newNetworkd() *networkd {
	return &networkd{on: os.Getenv("EC2NET_MANAGE_NETWORKD") == "1", dir: networkdRunDir, state: networkdStateDir, reload: func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "networkctl", "reload").CombinedOutput()
		if err != nil {
			return fmt.Errorf("networkctl reload: %v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}}
}

// sync writes or removes the file for the current primary link name and
// has networkd reload when it changed. A host without networkd is left
// alone.
func (n *networkd) sync(ctx context.Context, primary string, manageSecondaries bool, log *zap.Logger) {
	if !n.on {
		return
	}
	if _, err := os.Stat(n.state); err != nil {
		return
	}
	want := networkdFile(primary, manageSecondaries)
	if want == n.written {
		return
	}
	path := filepath.Join(n.dir, networkdUnmanage)
	var err error
	if want == "" {
		err = os.Remove(path)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	} else {
		err = writeAtomic(path, []byte(want))
	}
	if err != nil {
		if !n.failed {
			n.failed = true
			log.Warn("cannot tell systemd-networkd to leave the secondary ENIs alone: a .network matching every ENI may give them DHCP and default routes in main",
				zap.String("file", path), zap.Error(err))
		}
		return
	}
	n.written, n.failed = want, false
	if err := n.reload(ctx); err != nil {
		log.Warn("systemd-networkd did not reload", zap.Error(err))
		return
	}
	log.Info("systemd-networkd leaves the secondary ENIs to ec2net", zap.String("file", path), zap.String("primary", primary))
}

func writeAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// primaryLink names the primary ENI's link in snap ("" when unknown).
func (l *loop) primaryLink(snap *imds.Snapshot) string {
	if snap == nil {
		return ""
	}
	for _, link := range l.links.known {
		if link.MAC == snap.PrimaryMAC {
			return link.Name
		}
	}
	return ""
}
