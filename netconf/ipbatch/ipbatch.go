// Package ipbatch turns the changes `ec2net plan` prints (iproute2-like
// lines, netconf/text.go) into the anchor the benchmarks compare ec2net's
// apply with: `ip -batch` input, and the accept_ra sysctls ip cannot set.
// One conversion for every benchmark, so that their ratios to ip -batch
// measure the same thing.
package ipbatch

import (
	"os"
	"strings"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// Split splits plan lines (with or without the leading "ip ") for
// `ip -batch`, whose lines cannot carry -4/-6: everything goes in main
// except IPv6 rules (ip rule assumes IPv4 without -6), which need a
// second `ip -6 -batch`. The sysctl lines (accept_ra = 0 of each ENI) are
// returned apart, as key=value.
func Split(lines []string) (main, rules6 string, sysctls []string) {
	var m, r6 strings.Builder
	for _, c := range lines {
		c = strings.TrimPrefix(c, "ip ")
		switch {
		case strings.HasPrefix(c, "sysctl "):
			sysctls = append(sysctls, strings.TrimPrefix(c, "sysctl "))
		case strings.HasPrefix(c, "-6 rule "):
			r6.WriteString(strings.TrimPrefix(c, "-6 ") + "\n")
		case strings.HasPrefix(c, "-6 route ") && strings.Contains(c, " default "):
			m.WriteString(strings.Replace(strings.TrimPrefix(c, "-6 "), " default ", " ::/0 ", 1) + "\n")
		default:
			m.WriteString(strings.TrimPrefix(strings.TrimPrefix(c, "-4 "), "-6 ") + "\n")
		}
	}
	return m.String(), r6.String(), sysctls
}

// WriteSysctls writes key=value sysctls from a thread in ns
// (/proc/sys/net follows the namespace of the thread that opens it), as
// cheaply as a program can: the ip anchor is charged only for what ip
// itself cannot do.
func WriteSysctls(ns netns.NsHandle, sysctls []string) error {
	return nsutil.Do(ns, func() error {
		for _, kv := range sysctls {
			key, val, _ := strings.Cut(kv, "=")
			if err := os.WriteFile("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), []byte(val+"\n"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
}
