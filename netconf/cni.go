package netconf

import (
	"fmt"

	"github.com/ec2net/ec2net/netconf/internal/rtnl"
	"golang.org/x/sys/unix"
)

// IsPodVeth reports whether a link name is how the Amazon VPC CNI names
// the host end of a pod's veth: "eni" and 11 lowercase hex digits.
func IsPodVeth(name string) bool {
	if len(name) != 14 || name[:3] != "eni" {
		return false
	}
	for _, c := range name[3:] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

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
		if IsPodVeth(l.Name) {
			signs = append(signs, "pod veth "+l.Name)
			break
		}
	}
	return signs, nil
}
