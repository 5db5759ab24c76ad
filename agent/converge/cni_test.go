package converge

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ec2net/ec2net/agent/config"
)

type signs struct {
	s   []string
	err error
}

func (k signs) VPCCNISigns() ([]string, error) { return k.s, k.err }

// secondary-enis = auto: signs mean none, no sign means all, and a kernel
// that cannot be asked decides nothing (unless the CNI's file already
// says so): "no sign" then would put pods' addresses on the host.
func TestResolveDecidesNothingWhenTheKernelCannotBeAsked(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("EC2NET_CNI_CONF_DIR", dir)
	auto := config.Default()
	auto.SecondaryENIs = config.SecondaryAuto
	broken := signs{err: errors.New("rule dump failed")}
	if _, _, err := Resolve(auto, broken); err == nil {
		t.Errorf("a failed kernel check resolved auto")
	}
	if c, _, err := Resolve(auto, signs{}); err != nil || c.SecondaryENIs != config.SecondaryAll {
		t.Errorf("no sign: %q, %v", c.SecondaryENIs, err)
	}
	if c, s, err := Resolve(auto, signs{s: []string{"2 per-pod rules"}}); err != nil || c.SecondaryENIs != config.SecondaryNone || len(s) != 1 {
		t.Errorf("kernel signs: %q %v, %v", c.SecondaryENIs, s, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10-aws.conflist"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _, err := Resolve(auto, broken); err != nil || c.SecondaryENIs != config.SecondaryNone {
		t.Errorf("the CNI's file, the kernel not asked: %q, %v", c.SecondaryENIs, err)
	}
	all := config.Default()
	all.SecondaryENIs = config.SecondaryAll
	if c, _, err := Resolve(all, broken); err != nil || c.SecondaryENIs != config.SecondaryAll {
		t.Errorf("an explicit all: %q, %v", c.SecondaryENIs, err)
	}
}
