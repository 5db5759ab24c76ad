package vpcsim

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// Sysctls of the simulator's namespaces.

// Sysctl writes /proc/sys/<key> inside namespace ns. key may use dots
// (net.ipv4.conf.all.rp_filter) or slashes; with dots, a link name that
// contains dots must be written with slashes instead.
func (v *VPC) Sysctl(ns, key, value string) error {
	h, err := v.Handle(ns)
	if err != nil {
		return err
	}
	return sysctl(h, key, value)
}

func sysctl(h netns.NsHandle, key, value string) error {
	path := key
	if !strings.Contains(path, "/") {
		path = strings.ReplaceAll(path, ".", "/")
	}
	path = filepath.Join("/proc/sys", path)
	// /proc/sys/net resolves to the namespace of the thread that opens it.
	return nsutil.Do(h, func() error {
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("vpcsim: sysctl %s=%s: %w", key, value, err)
		}
		return nil
	})
}

// commonSysctls are set in every namespace: new namespaces inherit IPv4
// settings from the root namespace, so everything the simulation depends
// on is set explicitly.
var commonSysctls = [][2]string{
	{"net.ipv4.conf.all.rp_filter", "0"},
	{"net.ipv4.conf.default.rp_filter", "0"},
	{"net.ipv4.conf.all.arp_ignore", "0"},
	{"net.ipv4.conf.default.arp_ignore", "0"},
	{"net.ipv4.conf.all.arp_announce", "0"},
	{"net.ipv4.conf.default.arp_announce", "0"},
	{"net.ipv6.conf.all.disable_ipv6", "0"},
	{"net.ipv6.conf.default.disable_ipv6", "0"},
}

// instanceSysctls are an instance's settings (see Options.NoDAD).
func instanceSysctls(noDAD bool) [][2]string {
	instance := append([][2]string{
		{"net.ipv4.ip_forward", "0"},
		{"net.ipv6.conf.all.forwarding", "0"},
		// The simulated VPC sends no router advertisements; the primary's
		// IPv6 default route is installed as a DHCP/RA client would.
		{"net.ipv6.conf.default.accept_ra", "0"},
	}, commonSysctls...)
	if noDAD {
		instance = append(instance,
			[2]string{"net.ipv6.conf.all.accept_dad", "0"},
			[2]string{"net.ipv6.conf.default.accept_dad", "0"})
	}
	return instance
}

// setSysctls sets the router's and the remote's (instances set theirs
// when created).
func (v *VPC) setSysctls() error {
	router := append([][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv6.conf.all.forwarding", "1"},
		{"net.ipv6.conf.default.forwarding", "1"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}, commonSysctls...)
	remote := append([][2]string{
		{"net.ipv4.ip_forward", "0"},
		{"net.ipv6.conf.all.forwarding", "0"},
		{"net.ipv6.conf.all.accept_dad", "0"},
		{"net.ipv6.conf.default.accept_dad", "0"},
	}, commonSysctls...)
	for _, set := range []struct {
		ns   string
		keys [][2]string
	}{{v.Router, router}, {v.Remote, remote}} {
		for _, kv := range set.keys {
			if err := sysctl(v.handles[set.ns], kv[0], kv[1]); err != nil {
				return fmt.Errorf("%s: %w", set.ns, err)
			}
		}
	}
	return nil
}
