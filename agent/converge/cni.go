package converge

import (
	"os"
	"path/filepath"

	"github.com/ec2net/ec2net/agent/config"
)

// CNIConfDir is where the VPC CNI's configuration is looked for
// (EC2NET_CNI_CONF_DIR overrides it).
func CNIConfDir() string {
	if d := os.Getenv("EC2NET_CNI_CONF_DIR"); d != "" {
		return d
	}
	return "/etc/cni/net.d"
}

// KernelSigns is what a namespace shows of the VPC CNI
// (netconf.Reconciler.VPCCNISigns).
type KernelSigns interface {
	VPCCNISigns() ([]string, error)
}

// Resolve decides secondary-enis = auto, the one place that does: on a
// host where the Amazon VPC CNI hands ENI addresses to pods (its
// configuration file, its per-pod rules or its pod veths), configuring
// the secondary ENIs would put pods' addresses on the host and capture
// their traffic, so only the primary is configured; elsewhere every ENI
// is. The signs found are returned for a warning.
func Resolve(cfg config.Config, k KernelSigns) (config.Config, []string) {
	if cfg.SecondaryENIs != config.SecondaryAuto {
		return cfg, nil
	}
	var signs []string
	if m, _ := filepath.Glob(filepath.Join(CNIConfDir(), "*aws*.conflist")); len(m) > 0 {
		signs = append(signs, m[0])
	}
	if k != nil {
		if s, err := k.VPCCNISigns(); err == nil {
			signs = append(signs, s...)
		}
	}
	cfg.SecondaryENIs = config.SecondaryAll
	if len(signs) > 0 {
		cfg.SecondaryENIs = config.SecondaryNone
	}
	return cfg, signs
}
