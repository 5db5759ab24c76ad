package fakeimds

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

const secMAC = "0e:00:00:00:00:02"

func macKey(mac, key string) string { return "network/interfaces/macs/" + mac + "/" + key }

func TestAttachENIServesEveryKey(t *testing.T) {
	s, c := instance(t)
	e := secondary()
	e.IPv4Prefixes = []string{"100.64.2.32/28"}
	e.IPv6Prefixes = []string{"2001:db8:0:2:1::/80"}
	e.SecurityGroups = []string{"sg-0aaaaaaaaaaaaaaa1", "sg-0aaaaaaaaaaaaaaa2"}
	e.PublicIPv4 = []string{"100.100.0.2"}
	s.AttachENI(e)

	if got := c.mustGet("network/interfaces/macs/"); got != "0e:00:00:00:00:01/\n0e:00:00:00:00:02/" {
		t.Fatalf("macs/ = %q", got)
	}
	want := map[string]string{
		"device-number":                 "1",
		"interface-id":                  e.InterfaceID,
		"mac":                           secMAC,
		"local-ipv4s":                   "100.64.2.10\n100.64.2.11",
		"ipv6s":                         "2001:db8:0:2::10",
		"ipv4-prefix":                   "100.64.2.32/28",
		"ipv6-prefix":                   "2001:db8:0:2:1::/80",
		"subnet-ipv4-cidr-block":        "100.64.2.0/24",
		"subnet-ipv6-cidr-blocks":       "2001:db8:0:2::/64",
		"vpc-ipv4-cidr-block":           "100.64.0.0/16",
		"vpc-ipv4-cidr-blocks":          "100.64.0.0/16\n100.65.0.0/16",
		"vpc-ipv6-cidr-blocks":          "2001:db8::/56",
		"security-group-ids":            "sg-0aaaaaaaaaaaaaaa1\nsg-0aaaaaaaaaaaaaaa2",
		"public-ipv4s":                  "100.100.0.2",
		"owner-id":                      defaultAccountID,
		"ipv4-associations/100.100.0.2": "100.64.2.10",
	}
	for k, v := range want {
		if got := c.mustGet(macKey(secMAC, k)); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"subnet-id", "vpc-id"} {
		got := c.mustGet(macKey(secMAC, k))
		if !strings.HasPrefix(got, strings.TrimSuffix(k, "id")) || len(got) < 10 {
			t.Errorf("%s = %q", k, got)
		}
	}
	// ENIs in one subnet share its id; another subnet has another.
	same := secondary()
	same.MAC, same.DeviceNumber = "0e:00:00:00:00:03", 2
	s.AttachENI(same)
	if a, b := c.mustGet(macKey(secMAC, "subnet-id")), c.mustGet(macKey(same.MAC, "subnet-id")); a != b {
		t.Errorf("same subnet, ids %q and %q", a, b)
	}
	if a, b := c.mustGet(macKey(secMAC, "subnet-id")), c.mustGet(macKey(primary().MAC, "subnet-id")); a == b {
		t.Errorf("different subnets share id %q", a)
	}
	c.expectStatus(macKey(secMAC, "network-card"), http.StatusNotFound)
}

func TestAttachENIOmitsEmptyFields(t *testing.T) {
	s, c := instance(t)
	e := ENI{MAC: secMAC, InterfaceID: "eni-0123456789abcdef2", DeviceNumber: 2,
		SubnetIPv6: []string{"2001:db8:0:3::/64"}, IPv6: []string{"2001:db8:0:3::5"}}
	s.AttachENI(e)
	listing := strings.Split(c.mustGet("network/interfaces/macs/"+secMAC+"/"), "\n")
	for _, absent := range []string{"local-ipv4s", "subnet-ipv4-cidr-block", "network-card", "ipv4-prefix",
		"ipv6-prefix", "public-ipv4s", "ipv4-associations/", "vpc-ipv6-cidr-blocks"} {
		if contains(listing, absent) {
			t.Errorf("%s listed: %q", absent, listing)
		}
		c.expectStatus(macKey(secMAC, strings.TrimSuffix(absent, "/")), http.StatusNotFound)
	}
	// A default security group is served when none is given.
	if sg := c.mustGet(macKey(secMAC, "security-group-ids")); !strings.HasPrefix(sg, "sg-") {
		t.Errorf("security-group-ids = %q", sg)
	}
}

func TestNetworkCardIsServedOnlyWhenSet(t *testing.T) {
	s, c := instance(t)
	e := secondary()
	e.NetworkCard = intPtr(1)
	s.AttachENI(e)
	if got := c.mustGet(macKey(secMAC, "network-card")); got != "1" {
		t.Fatalf("network-card = %q", got)
	}
	c.expectStatus(macKey(primary().MAC, "network-card"), http.StatusNotFound)
}

func TestDetachENIRemovesItsDirectory(t *testing.T) {
	s, c := instance(t)
	s.AttachENI(secondary())
	c.expectStatus(macKey(secMAC, "mac"), http.StatusOK)
	s.DetachENI(secMAC)
	c.expectStatus(macKey(secMAC, "mac"), http.StatusNotFound)
	c.expectStatus("network/interfaces/macs/"+secMAC+"/", http.StatusNotFound)
	if got := c.mustGet("network/interfaces/macs/"); got != "0e:00:00:00:00:01/" {
		t.Fatalf("macs/ = %q", got)
	}
	if _, ok := s.ENI(secMAC); ok {
		t.Fatal("ENI still present")
	}
}

func TestAssignAndUnassignAddresses(t *testing.T) {
	s, c := instance(t)
	s.AttachENI(secondary())
	s.AssignIPv4(secMAC, "100.64.2.12", "100.64.2.10") // .10 already there: not doubled
	if got := c.mustGet(macKey(secMAC, "local-ipv4s")); got != "100.64.2.10\n100.64.2.11\n100.64.2.12" {
		t.Fatalf("after assign: %q", got)
	}
	s.UnassignIPv4(secMAC, "100.64.2.11")
	if got := c.mustGet(macKey(secMAC, "local-ipv4s")); got != "100.64.2.10\n100.64.2.12" {
		t.Fatalf("after unassign: %q", got)
	}
	s.AssignIPv6(secMAC, "2001:db8:0:2::11")
	if got := c.mustGet(macKey(secMAC, "ipv6s")); got != "2001:db8:0:2::10\n2001:db8:0:2::11" {
		t.Fatalf("ipv6s: %q", got)
	}
	s.UnassignIPv6(secMAC, "2001:db8:0:2::10")
	if got := c.mustGet(macKey(secMAC, "ipv6s")); got != "2001:db8:0:2::11" {
		t.Fatalf("ipv6s: %q", got)
	}
	// Unknown MAC: ignored, nothing created.
	s.AssignIPv4("0e:00:00:00:00:99", "100.64.9.9")
	c.expectStatus("network/interfaces/macs/0e:00:00:00:00:99/", http.StatusNotFound)
}

func TestUnassigningLastValueRemovesTheKey(t *testing.T) {
	s, c := instance(t)
	s.AttachENI(secondary())
	s.UnassignIPv6(secMAC, "2001:db8:0:2::10")
	c.expectStatus(macKey(secMAC, "ipv6s"), http.StatusNotFound)
	if contains(strings.Split(c.mustGet("network/interfaces/macs/"+secMAC+"/"), "\n"), "ipv6s") {
		t.Fatal("ipv6s still listed")
	}
	s.UnassignIPv4(secMAC, "100.64.2.10", "100.64.2.11")
	c.expectStatus(macKey(secMAC, "local-ipv4s"), http.StatusNotFound)
	s.AssignIPv6(secMAC, "2001:db8:0:2::20")
	if got := c.mustGet(macKey(secMAC, "ipv6s")); got != "2001:db8:0:2::20" {
		t.Fatalf("ipv6s back: %q", got)
	}
}

func TestAssignPrefixPicksKeyByFamily(t *testing.T) {
	s, c := instance(t)
	s.AttachENI(secondary())
	s.AssignPrefix(secMAC, "100.64.2.48/28", "2001:db8:0:2:2::/80", "100.64.2.64/28")
	if got := c.mustGet(macKey(secMAC, "ipv4-prefix")); got != "100.64.2.48/28\n100.64.2.64/28" {
		t.Fatalf("ipv4-prefix = %q", got)
	}
	if got := c.mustGet(macKey(secMAC, "ipv6-prefix")); got != "2001:db8:0:2:2::/80" {
		t.Fatalf("ipv6-prefix = %q", got)
	}
	s.UnassignPrefix(secMAC, "2001:db8:0:2:2::/80", "100.64.2.48/28")
	c.expectStatus(macKey(secMAC, "ipv6-prefix"), http.StatusNotFound)
	if got := c.mustGet(macKey(secMAC, "ipv4-prefix")); got != "100.64.2.64/28" {
		t.Fatalf("ipv4-prefix = %q", got)
	}
}

func TestSetPrimaryMACSetsTopLevelKeys(t *testing.T) {
	s, c := instance(t)
	if got := c.mustGet("mac"); got != primary().MAC {
		t.Fatalf("mac = %q", got)
	}
	if got := c.mustGet("local-ipv4"); got != "100.64.1.10" {
		t.Fatalf("local-ipv4 = %q", got)
	}
	c.expectStatus("ipv6", http.StatusNotFound)
	var doc struct{ PrivateIP string }
	if err := json.Unmarshal([]byte(c.mustGet("/latest/dynamic/instance-identity/document")), &doc); err != nil || doc.PrivateIP != "100.64.1.10" {
		t.Fatalf("document privateIp %q (%v)", doc.PrivateIP, err)
	}
	// An IPv6-only primary: no local-ipv4.
	v6 := ENI{MAC: "0e:00:00:00:00:aa", InterfaceID: "eni-0123456789abcdefa", IPv6: []string{"2001:db8:0:4::1"}}
	s.AttachENI(v6)
	s.SetPrimaryMAC("0E:00:00:00:00:AA")
	if got := c.mustGet("mac"); got != v6.MAC {
		t.Fatalf("mac = %q", got)
	}
	c.expectStatus("local-ipv4", http.StatusNotFound)
	if got := c.mustGet("ipv6"); got != "2001:db8:0:4::1" {
		t.Fatalf("ipv6 = %q", got)
	}
}

func TestENIReturnsCurrentView(t *testing.T) {
	s := New()
	e := secondary()
	e.NetworkCard = intPtr(0)
	e.IPv4Prefixes = []string{"100.64.2.32/28"}
	e.SecurityGroups = []string{"sg-0aaaaaaaaaaaaaaa1"}
	e.PublicIPv4 = []string{"100.100.0.2"}
	s.AttachENI(e)
	got, ok := s.ENI(strings.ToUpper(secMAC))
	if !ok {
		t.Fatal("not found")
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("ENI view\n got %+v\nwant %+v", got, e)
	}
	s.AssignIPv4(secMAC, "100.64.2.12")
	got, _ = s.ENI(secMAC)
	if len(got.IPv4) != 3 || got.IPv4[2] != "100.64.2.12" {
		t.Fatalf("after assign: %v", got.IPv4)
	}
	if _, ok := s.ENI("0e:00:00:00:00:99"); ok {
		t.Fatal("unknown MAC found")
	}
	// Trees give views too.
	tr, err := Tree("real01")
	if err != nil {
		t.Fatal(err)
	}
	dev1, ok := tr.ENI("06:17:04:d7:26:08")
	if !ok || dev1.DeviceNumber != 1 || dev1.SubnetIPv4 != "100.64.16.0/20" || dev1.NetworkCard != nil ||
		!reflect.DeepEqual(dev1.IPv4, []string{"100.64.31.16"}) || dev1.IPv6 != nil {
		t.Fatalf("real01 device 1: %+v", dev1)
	}
	if got := tr.MACs(); !reflect.DeepEqual(got, []string{"06:17:04:d7:26:08", "06:17:04:d7:26:09"}) {
		t.Fatalf("MACs = %v", got)
	}
}

func TestPropagationDeviceNumberReadsZeroAndKeysAreMissing(t *testing.T) {
	s, c := instance(t)
	s.SetPropagation(time.Minute, "subnet-ipv4-cidr-block", "ipv6s", "network-card")
	e := secondary()
	e.NetworkCard = intPtr(0)
	s.AttachENI(e)
	if !s.Propagating(secMAC) {
		t.Fatal("not propagating")
	}
	if got := c.mustGet(macKey(secMAC, "device-number")); got != "0" {
		t.Fatalf("device-number = %q during propagation", got)
	}
	listing := strings.Split(c.mustGet("network/interfaces/macs/"+secMAC+"/"), "\n")
	for _, k := range []string{"subnet-ipv4-cidr-block", "ipv6s", "network-card"} {
		c.expectStatus(macKey(secMAC, k), http.StatusNotFound)
		if contains(listing, k) {
			t.Errorf("%s listed during propagation", k)
		}
	}
	if !contains(listing, "local-ipv4s") {
		t.Errorf("local-ipv4s not listed: %q", listing)
	}
	// The MAC shows in macs/ from the start, and the primary (attached
	// before SetPropagation) is not affected.
	if !strings.Contains(c.mustGet("network/interfaces/macs/"), secMAC+"/") {
		t.Fatal("MAC not listed")
	}
	c.expectStatus(macKey(primary().MAC, "subnet-ipv4-cidr-block"), http.StatusOK)
	// The view gives the real values.
	if v, _ := s.ENI(secMAC); v.DeviceNumber != 1 {
		t.Fatalf("view device %d", v.DeviceNumber)
	}
}

func TestPropagationEndsWhenTheWindowPasses(t *testing.T) {
	s, c := instance(t)
	s.SetPropagation(30*time.Second, "ipv6s")
	s.AttachENI(secondary())
	s.Advance(29 * time.Second)
	c.expectStatus(macKey(secMAC, "ipv6s"), http.StatusNotFound)
	s.Advance(time.Second)
	if got := c.mustGet(macKey(secMAC, "device-number")); got != "1" {
		t.Fatalf("device-number = %q after the window", got)
	}
	c.expectStatus(macKey(secMAC, "ipv6s"), http.StatusOK)
	if s.Propagating(secMAC) {
		t.Fatal("still propagating")
	}
}

func TestFinishPropagationEndsAllWindows(t *testing.T) {
	s, c := instance(t)
	s.SetPropagation(time.Hour, "subnet-ipv4-cidr-block")
	s.AttachENI(secondary())
	third := secondary()
	third.MAC, third.DeviceNumber = "0e:00:00:00:00:03", 2
	s.AttachENI(third)
	c.expectStatus(macKey(third.MAC, "subnet-ipv4-cidr-block"), http.StatusNotFound)
	s.FinishPropagation()
	for mac, dev := range map[string]string{secMAC: "1", third.MAC: "2"} {
		if got := c.mustGet(macKey(mac, "device-number")); got != dev {
			t.Errorf("%s device-number = %q", mac, got)
		}
		c.expectStatus(macKey(mac, "subnet-ipv4-cidr-block"), http.StatusOK)
	}
	// Later attaches still propagate slowly; SetPropagation(0) stops that.
	s.DetachENI(third.MAC)
	s.AttachENI(third)
	if got := c.mustGet(macKey(third.MAC, "device-number")); got != "0" {
		t.Fatalf("re-attached device-number = %q", got)
	}
	s.SetPropagation(0)
	s.AttachENI(third)
	if got := c.mustGet(macKey(third.MAC, "device-number")); got != "2" {
		t.Fatalf("attached without propagation: device-number = %q", got)
	}
}

func TestConcurrentChangesWhileServing(t *testing.T) {
	s, c := instance(t)
	ep := c.base
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rc := newClient(t, ep)
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Errors are not failures here: this test is for -race.
				req, _ := http.NewRequest(http.MethodGet, ep+"/latest/meta-data/"+macKey(secMAC, "local-ipv4s"), nil)
				req.Header.Set(TokenHeader, c.token)
				if resp, err := rc.hc.Do(req); err == nil {
					resp.Body.Close()
				}
			}
		}()
	}
	for i := 0; i < 200; i++ {
		s.AttachENI(secondary())
		s.AssignIPv4(secMAC, "100.64.2.50")
		s.AssignPrefix(secMAC, "100.64.2.64/28")
		s.SetFault("mac", Fault{Kind: Fault500})
		s.ClearFaults()
		_ = s.RequestCounts()
		_, _ = s.ENI(secMAC)
		s.Advance(time.Millisecond)
		s.DetachENI(secMAC)
	}
	close(stop)
	wg.Wait()
	if s.TotalRequests() == 0 {
		t.Fatal("no requests served")
	}
}
