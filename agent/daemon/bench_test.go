package daemon

import (
	"context"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds/fakeimds"
	"github.com/ec2net/ec2net/agent/vpcsim"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// BenchmarkAttachToTraffic measures hot attach with IMDS ready: from the
// RTM_NEWLINK of the new ENI to the first successful TCP connect from its
// last address through the VPC router. Targets: p50 ≤ 50 ms, p99 ≤ 200 ms.
// Run with -benchtime 50x (make bench).
func BenchmarkAttachToTraffic(b *testing.B) {
	vpc := newVPC(b, "bmatt")
	h := startDaemon(b, vpc, func(c *config.Config) { c.RefreshInterval = time.Hour })
	events := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	must(b, netlink.LinkSubscribeAt(h.ns, events, done))

	spec := eth1
	last := spec.IPv4[len(spec.IPv4)-1]
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// IMDS ready before the NIC appears.
		vpc.IMDS.AttachENI(imdsENI(spec))
		must(b, vpc.AttachLinkOnly(spec))
		var t0 time.Time
		for t0.IsZero() {
			select {
			case u := <-events:
				if u.Header.Type == unix.RTM_NEWLINK && u.Attrs().HardwareAddr.String() == spec.MAC {
					t0 = time.Now()
				}
			case <-time.After(5 * time.Second):
				b.Fatal("no RTM_NEWLINK for the attached ENI")
			}
		}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 25*time.Millisecond)
			_, err := vpc.ProbeTCP(ctx, last)
			cancel()
			if err == nil {
				break
			}
			if time.Since(t0) > 10*time.Second {
				b.Fatalf("no traffic from %s within 10s: %v", last, err)
			}
		}
		lat = append(lat, time.Since(t0))
		b.StopTimer()
		must(b, vpc.Detach(spec.MAC))
		eventually(b, 5*time.Second, "detached ENI cleaned up", func() error {
			if n := tableRules(h.ownedRules(), 10001); n != 0 {
				return errString("rules left: " + strconv.Itoa(n))
			}
			return nil
		})
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(pct(lat, 0.50), "p50-ms")
	b.ReportMetric(pct(lat, 0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

type errString string

func (e errString) Error() string { return string(e) }

func imdsENI(s vpcsim.ENISpec) fakeimds.ENI {
	str := func(as []netip.Addr) []string {
		out := make([]string, len(as))
		for i, a := range as {
			out[i] = a.String()
		}
		return out
	}
	e := fakeimds.ENI{MAC: s.MAC, InterfaceID: s.ID, DeviceNumber: s.Device, NetworkCard: s.Card,
		IPv4: str(s.IPv4), IPv6: str(s.IPv6), VPCIPv4: []string{"100.64.0.0/16"}}
	if s.SubnetIPv4.IsValid() {
		e.SubnetIPv4 = s.SubnetIPv4.String()
	}
	if s.SubnetIPv6.IsValid() {
		e.SubnetIPv6 = []string{s.SubnetIPv6.String()}
		e.VPCIPv6 = []string{"2001:db8::/56"}
	}
	return e
}
