package converge

import (
	"fmt"
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
// is. The signs found are returned for a warning. When the kernel cannot
// be asked and no file says so, nothing is decided (an error): "no sign"
// would put pods' addresses on the host.
func Resolve(cfg config.Config, k KernelSigns) (config.Config, []string, error) {
	if cfg.SecondaryENIs != config.SecondaryAuto {
		return cfg, nil, nil
	}
	var signs []string
	if m, _ := filepath.Glob(filepath.Join(CNIConfDir(), "*aws*.conflist")); len(m) > 0 {
		signs = append(signs, m[0])
	}
	var kerr error
	if k != nil {
		s, err := k.VPCCNISigns()
		signs, kerr = append(signs, s...), err
	}
	cfg.SecondaryENIs = config.SecondaryAll
	switch {
	case len(signs) > 0:
		cfg.SecondaryENIs = config.SecondaryNone
	case kerr != nil:
		return cfg, nil, fmt.Errorf("secondary-enis = auto: cannot look for the VPC CNI's rules and pod veths: %w", kerr)
	}
	return cfg, signs, nil
}
