package netconf

import (
	"fmt"
	"regexp"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"golang.org/x/sys/unix"
)

// podVeth is how the Amazon VPC CNI names the host end of a pod's veth.
var podVeth = regexp.MustCompile(`^eni[0-9a-f]{11}$`)

// VPCCNISigns lists what in the kernel says the Amazon VPC CNI hands
// this host's ENI addresses to pods: its per-pod rules ("to <pod> lookup
// main" at priority 512, "from <pod> lookup <ENI table>" at 1536) and its
// pod veths. One dump of rules and links.
func (r *Reconciler) VPCCNISigns() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ruleDumper == nil {
		return nil, fmt.Errorf("netconf: reconciler closed")
	}
	var signs []string
	podRules := 0
	err := rtnl.RetryDump(func() error {
		podRules = 0
		return r.ruleDumper.Rules(func(ru rtnl.Rule) {
			if (ru.Priority == 512 && ru.Table == unix.RT_TABLE_MAIN) || (ru.Priority == 1536 && ru.Src.IsValid()) {
				podRules++
			}
		})
	})
	if err != nil {
		return nil, err
	}
	if podRules > 0 {
		signs = append(signs, fmt.Sprintf("%d per-pod rules at priority 512/1536", podRules))
	}
	var links []rtnl.Link
	if err := rtnl.RetryDump(func() (err error) { links, err = r.linkDumper.Links(); return err }); err != nil {
		return nil, err
	}
	for _, l := range links {
		if podVeth.MatchString(l.Name) {
			signs = append(signs, "pod veth "+l.Name)
			break
		}
	}
	return signs, nil
}
