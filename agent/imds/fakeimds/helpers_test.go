package fakeimds

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// start serves s on loopback for the test and closes it afterwards.
func start(t *testing.T, s *Server) string {
	t.Helper()
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return ep
}

// client is a minimal IMDSv2 client over its own transport, so that its
// idle connections can be closed when the test ends (goleak).
type client struct {
	t     *testing.T
	base  string
	hc    *http.Client
	token string
}

func newClient(t *testing.T, endpoint string) *client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: endpoint, hc: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// do sends one request and returns status, headers and body.
func (c *client) do(method, path string, hdr map[string]string) (int, http.Header, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// login fetches a token with a 6 h TTL.
func (c *client) login() *client {
	c.t.Helper()
	code, _, tok := c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: "21600"})
	if code != http.StatusOK || tok == "" {
		c.t.Fatalf("token: %d %q", code, tok)
	}
	c.token = tok
	return c
}

// get reads a meta-data path (relative to /latest/meta-data/ unless it
// starts with /).
func (c *client) get(path string) (int, string) {
	c.t.Helper()
	if !strings.HasPrefix(path, "/") {
		path = "/latest/meta-data/" + path
	}
	code, _, body := c.do(http.MethodGet, path, map[string]string{TokenHeader: c.token})
	return code, body
}

// mustGet expects 200 and returns the body.
func (c *client) mustGet(path string) string {
	c.t.Helper()
	code, body := c.get(path)
	if code != http.StatusOK {
		c.t.Fatalf("GET %s: %d", path, code)
	}
	return body
}

func (c *client) expectStatus(path string, want int) {
	c.t.Helper()
	if code, _ := c.get(path); code != want {
		c.t.Fatalf("GET %s: %d, want %d", path, code, want)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

func intPtr(n int) *int { return &n }

// secondary is a dual-stack ENI in test ranges.
func secondary() ENI {
	return ENI{
		MAC:          "0e:00:00:00:00:02",
		InterfaceID:  "eni-0123456789abcdef2",
		DeviceNumber: 1,
		SubnetIPv4:   "100.64.2.0/24",
		SubnetIPv6:   []string{"2001:db8:0:2::/64"},
		VPCIPv4:      []string{"100.64.0.0/16", "100.65.0.0/16"},
		VPCIPv6:      []string{"2001:db8::/56"},
		IPv4:         []string{"100.64.2.10", "100.64.2.11"},
		IPv6:         []string{"2001:db8:0:2::10"},
	}
}

// primary is an IPv4-only primary ENI.
func primary() ENI {
	return ENI{
		MAC:          "0e:00:00:00:00:01",
		InterfaceID:  "eni-0123456789abcdef1",
		DeviceNumber: 0,
		SubnetIPv4:   "100.64.1.0/24",
		VPCIPv4:      []string{"100.64.0.0/16"},
		IPv4:         []string{"100.64.1.10"},
	}
}

// instance returns a New server with the primary attached and started.
func instance(t *testing.T) (*Server, *client) {
	t.Helper()
	s := New()
	s.AttachENI(primary())
	s.SetPrimaryMAC(primary().MAC)
	c := newClient(t, start(t, s)).login()
	return s, c
}
