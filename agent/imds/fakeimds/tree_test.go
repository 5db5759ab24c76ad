package fakeimds

import (
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

func treeClient(t *testing.T, name string) (*Server, *client) {
	t.Helper()
	s, err := Tree(name)
	if err != nil {
		t.Fatal(err)
	}
	return s, newClient(t, start(t, s)).login()
}

func TestLeafIsTextWithoutTrailingNewline(t *testing.T) {
	_, c := treeClient(t, "real01")
	code, hdr, body := c.do(http.MethodGet, "/latest/meta-data/mac", map[string]string{TokenHeader: c.token})
	if code != http.StatusOK || body != "06:17:04:d7:26:09" {
		t.Fatalf("mac: %d %q", code, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain" {
		t.Fatalf("content type %q", ct)
	}
}

func TestDirectoryListingIsSortedWithSlashOnSubdirectories(t *testing.T) {
	_, c := treeClient(t, "real01")
	// real01's MACs sort opposite to their device numbers: device 1 first.
	if got, want := c.mustGet("network/interfaces/macs/"), "06:17:04:d7:26:08/\n06:17:04:d7:26:09/"; got != want {
		t.Fatalf("macs/ = %q, want %q", got, want)
	}
	list := strings.Split(c.mustGet("network/interfaces/macs/06:17:04:d7:26:09/"), "\n")
	if !contains(list, "ipv4-associations/") || !contains(list, "local-ipv4s") || contains(list, "local-ipv4s/") {
		t.Fatalf("MAC directory listing: %q", list)
	}
	for i := 1; i < len(list); i++ {
		if strings.TrimSuffix(list[i-1], "/") > strings.TrimSuffix(list[i], "/") {
			t.Fatalf("not sorted: %q before %q", list[i-1], list[i])
		}
	}
	if got := c.mustGet("network/interfaces/macs/06:17:04:d7:26:09/ipv4-associations/100.100.77.202"); got != "100.64.31.15" {
		t.Fatalf("association = %q", got)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestDirectoryWithoutTrailingSlashListsToo(t *testing.T) {
	_, c := treeClient(t, "real02")
	with := c.mustGet("network/interfaces/macs/")
	without := c.mustGet("network/interfaces/macs")
	if with != without || with == "" {
		t.Fatalf("with slash %q, without %q", with, without)
	}
	if root := c.mustGet("/latest/meta-data/"); !strings.Contains(root, "network/") || !strings.Contains(root, "mac\n") {
		t.Fatalf("meta-data listing: %q", root)
	}
}

func TestAbsentKeyIs404(t *testing.T) {
	_, c := treeClient(t, "real01")
	c.expectStatus("network/interfaces/macs/06:17:04:d7:26:08/ipv6s", http.StatusNotFound)
	c.expectStatus("network/interfaces/macs/0e:ff:ff:ff:ff:ff/", http.StatusNotFound)
	c.expectStatus("no-such-key", http.StatusNotFound)
	c.expectStatus("mac/below-a-leaf", http.StatusNotFound)
	c.expectStatus("network//interfaces", http.StatusNotFound)
	c.expectStatus("/latest/user-data", http.StatusNotFound)
	c.expectStatus("/2009-04-04/meta-data/mac", http.StatusNotFound)
}

func TestMultiValuedKeysAreNewlineSeparated(t *testing.T) {
	_, c := treeClient(t, "real02")
	macs := strings.Split(c.mustGet("network/interfaces/macs/"), "\n")
	var found bool
	for _, m := range macs {
		code, body := c.get("network/interfaces/macs/" + m + "ipv6s")
		if code == http.StatusOK && len(strings.Split(body, "\n")) == 3 {
			found = true
		}
	}
	if !found {
		t.Fatalf("no ENI with a 3-line ipv6s among %q", macs)
	}
}

func TestInstanceIdentityDocumentIsServed(t *testing.T) {
	for _, name := range TreeNames() {
		t.Run(name, func(t *testing.T) {
			_, c := treeClient(t, name)
			var doc struct {
				Region     string `json:"region"`
				InstanceID string `json:"instanceId"`
			}
			if err := json.Unmarshal([]byte(c.mustGet("/latest/dynamic/instance-identity/document")), &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Region != "us-east-2" || doc.InstanceID != c.mustGet("instance-id") {
				t.Fatalf("document %+v", doc)
			}
		})
	}
}

func TestTreeRejectsUnknownName(t *testing.T) {
	if _, err := Tree("real99"); err == nil {
		t.Fatal("no error for an unknown tree")
	}
}

func TestLoadTreeReadsAFile(t *testing.T) {
	s, err := LoadTree(filepath.Join("testdata", "real03.json"))
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, start(t, s)).login()
	// IPv6-only instance: no subnet-ipv4-cidr-block, no local-ipv4s.
	c.expectStatus("network/interfaces/macs/02:7c:03:b8:5c:af/subnet-ipv4-cidr-block", http.StatusNotFound)
	c.expectStatus("network/interfaces/macs/02:7c:03:b8:5c:af/local-ipv4s", http.StatusNotFound)
	if got := c.mustGet("network/interfaces/macs/02:7c:03:b8:5c:af/subnet-ipv6-cidr-blocks"); got != "2001:db8:67f:f201:0:0:0:0/64" {
		t.Fatalf("subnet = %q", got)
	}
	if _, err := LoadTree(filepath.Join("testdata", "missing.json")); err == nil {
		t.Fatal("no error for a missing file")
	}
}

func TestNewFromTreeServesGivenTree(t *testing.T) {
	s := NewFromTree(map[string]any{
		"meta-data": map[string]any{
			"mac":         "0e:00:00:00:00:07",
			"instance-id": "i-0000000000000007",
			"placement":   map[string]any{"region": "eu-west-1"},
		},
	})
	c := newClient(t, start(t, s)).login()
	if got := c.mustGet("placement"); got != "region" {
		t.Fatalf("placement = %q", got)
	}
	if got := c.mustGet("placement/region"); got != "eu-west-1" {
		t.Fatalf("region = %q", got)
	}
	// The tree gives no dynamic/ content: 404, not a crash.
	c.expectStatus("/latest/dynamic/instance-identity/document", http.StatusNotFound)
}

func TestSetCreatesDirectoriesAndDeleteRemoves(t *testing.T) {
	s := New()
	c2 := newClient(t, start(t, s)).login()
	s.Set("events/recommendations/rebalance", `{"noticeTime":"2026-11-25T12:00:00Z"}`)
	if got := c2.mustGet("events/recommendations/"); got != "rebalance" {
		t.Fatalf("listing %q", got)
	}
	s.Set("/latest/dynamic/fws/instance-monitoring", "disabled")
	if got := c2.mustGet("/latest/dynamic/fws/instance-monitoring"); got != "disabled" {
		t.Fatalf("dynamic = %q", got)
	}
	s.Delete("events/recommendations")
	c2.expectStatus("events/recommendations/rebalance", http.StatusNotFound)
	c2.expectStatus("events/recommendations/", http.StatusNotFound)
	if got := c2.mustGet("events/"); got != "maintenance/" {
		t.Fatalf("events/ = %q", got)
	}
}

func BenchmarkGetMACListing(b *testing.B) {
	s, err := Tree("real02")
	if err != nil {
		b.Fatal(err)
	}
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	req, _ := http.NewRequest(http.MethodPut, ep+"/latest/api/token", nil)
	req.Header.Set(TokenTTLHeader, "60")
	resp, err := hc.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	get, _ := http.NewRequest(http.MethodGet, ep+"/latest/meta-data/network/interfaces/macs/", nil)
	get.Header.Set(TokenHeader, string(tok))
	for b.Loop() {
		resp, err := hc.Do(get)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatal(resp.Status)
		}
	}
}
