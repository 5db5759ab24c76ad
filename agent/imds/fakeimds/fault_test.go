package fakeimds

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// rawGet sends a GET with the client's token and returns the response or
// the transport error; the body is read fully.
func (c *client) rawGet(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/latest/meta-data/"+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set(TokenHeader, c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func TestFaultStatusCodes(t *testing.T) {
	for kind, want := range map[FaultKind]int{
		Fault500: http.StatusInternalServerError,
		Fault429: http.StatusTooManyRequests,
		Fault403: http.StatusForbidden,
		Fault404: http.StatusNotFound,
		Fault400: http.StatusBadRequest,
		Fault431: http.StatusRequestHeaderFieldsTooLarge,
	} {
		t.Run(kind.String(), func(t *testing.T) {
			s, c := instance(t)
			s.SetFault("", Fault{Kind: kind})
			c.expectStatus("mac", want)
			c.expectStatus("network/interfaces/macs/", want)
			// Without Token, the token PUT still works.
			c.login()
		})
	}
}

func TestFaultAppliesOnlyUnderItsPathPrefix(t *testing.T) {
	s, c := instance(t)
	s.SetFault("network/", Fault{Kind: Fault500})
	c.expectStatus("network/interfaces/macs/", http.StatusInternalServerError)
	c.expectStatus("mac", http.StatusOK)
	c.expectStatus("/latest/dynamic/instance-identity/document", http.StatusOK)
	s.SetFault("dynamic/", Fault{Kind: Fault429})
	c.expectStatus("/latest/dynamic/instance-identity/document", http.StatusTooManyRequests)
}

func TestLatestSetFaultWins(t *testing.T) {
	s, c := instance(t)
	s.SetFault("", Fault{Kind: Fault500})
	s.SetFault("mac", Fault{Kind: FaultNone}) // exempt one key
	c.expectStatus("mac", http.StatusOK)
	c.expectStatus("instance-id", http.StatusInternalServerError)
	s.SetFault("", Fault{Kind: Fault429}) // re-set: now newer than "mac"
	c.expectStatus("mac", http.StatusTooManyRequests)
	s.SetFault("mac", Fault{Kind: Fault403})
	c.expectStatus("mac", http.StatusForbidden)
	c.expectStatus("instance-id", http.StatusTooManyRequests)
}

func TestClearFaultsRemovesAll(t *testing.T) {
	s, c := instance(t)
	s.SetFault("", Fault{Kind: Fault500, Token: true})
	s.SetFault("mac", Fault{Kind: FaultReset})
	s.ClearFaults()
	c.login()
	c.expectStatus("mac", http.StatusOK)
	c.expectStatus("instance-id", http.StatusOK)
}

func TestFaultWithTokenAppliesToTokenPut(t *testing.T) {
	s, c := instance(t)
	s.SetFault("network/", Fault{Kind: Fault403, Token: true})
	if code, _, _ := c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: "60"}); code != http.StatusForbidden {
		t.Fatalf("token PUT: %d, want 403", code)
	}
	c.expectStatus("mac", http.StatusOK)
	c.expectStatus("network/", http.StatusForbidden)
}

func TestFaultHangBlocksUntilClientGivesUp(t *testing.T) {
	s, c := instance(t)
	s.SetFault("mac", Fault{Kind: FaultHang})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.rawGet(ctx, "mac")
		done <- err
	}()
	waitFor(t, "the hanging request to arrive", func() bool { return s.Requests("/latest/meta-data/mac") == 1 })
	select {
	case err := <-done:
		t.Fatalf("request finished while hanging: %v", err)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context canceled", err)
	}
	c.expectStatus("instance-id", http.StatusOK) // the rest still answers
}

func TestFaultHangIsUnblockedByClose(t *testing.T) {
	s := New()
	s.AttachENI(primary())
	s.SetPrimaryMAC(primary().MAC)
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := newClient(t, ep).login()
	s.SetFault("", Fault{Kind: FaultHang})
	done := make(chan error, 1)
	go func() {
		_, _, err := c.rawGet(context.Background(), "mac")
		done <- err
	}()
	waitFor(t, "the hanging request to arrive", func() bool { return s.Requests("/latest/meta-data/mac") == 1 })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("hung request succeeded after Close")
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Start("127.0.0.1:0"); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

func TestFaultSlowDelaysThenAnswers(t *testing.T) {
	s, c := instance(t)
	const delay = 50 * time.Millisecond
	s.SetFault("mac", Fault{Kind: FaultSlow, Delay: delay})
	t0 := time.Now()
	code, body, err := c.rawGet(context.Background(), "mac")
	if err != nil || code != http.StatusOK || string(body) != primary().MAC {
		t.Fatalf("slow GET: %d %q %v", code, body, err)
	}
	if el := time.Since(t0); el < delay {
		t.Fatalf("answered after %v, before the %v delay", el, delay)
	}
}

func TestFaultGarbageReturnsNonPrintableBytes(t *testing.T) {
	s, c := instance(t)
	s.SetFault("mac", Fault{Kind: FaultGarbage})
	code, body, err := c.rawGet(context.Background(), "mac")
	if err != nil || code != http.StatusOK || len(body) == 0 {
		t.Fatalf("garbage GET: %d %d bytes %v", code, len(body), err)
	}
	for i, b := range body {
		if b >= 0x20 && b < 0x7f {
			t.Fatalf("byte %d is printable: %q", i, b)
		}
	}
}

func TestFaultTruncatedBodyIsShort(t *testing.T) {
	s, c := instance(t)
	s.SetFault("mac", Fault{Kind: FaultTruncated})
	code, _, err := c.rawGet(context.Background(), "mac")
	if code != http.StatusOK || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated GET: status %d, err %v; want 200 and unexpected EOF", code, err)
	}
}

func TestFaultResetClosesConnectionAbruptly(t *testing.T) {
	s, c := instance(t)
	s.SetFault("mac", Fault{Kind: FaultReset})
	_, _, err := c.rawGet(context.Background(), "mac")
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("err = %v, want connection reset", err)
	}
	s.ClearFaults()
	c.expectStatus("mac", http.StatusOK)
}

func TestRequestCounters(t *testing.T) {
	s, c := instance(t) // one token PUT so far
	c.mustGet("network/interfaces/macs/")
	c.mustGet("network/interfaces/macs/")
	c.mustGet("mac")
	c.expectStatus("nope", http.StatusNotFound)
	s.SetFault("mac", Fault{Kind: Fault500})
	c.expectStatus("mac", http.StatusInternalServerError) // faulted requests count too
	if got := s.Requests("/latest/meta-data/network/interfaces/macs/"); got != 2 {
		t.Errorf("macs/ count %d", got)
	}
	if got := s.Requests("/latest/meta-data/mac"); got != 2 {
		t.Errorf("mac count %d", got)
	}
	want := map[string]int{
		"PUT /latest/api/token":                      1,
		"/latest/meta-data/network/interfaces/macs/": 2,
		"/latest/meta-data/mac":                      2,
		"/latest/meta-data/nope":                     1,
	}
	got := s.RequestCounts()
	if len(got) != len(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if s.TotalRequests() != 6 {
		t.Errorf("total %d, want 6", s.TotalRequests())
	}
	s.ResetCounters()
	if s.TotalRequests() != 0 || len(s.RequestCounts()) != 0 {
		t.Error("counters not reset")
	}
}

func TestClosedServerAnswersNothingThroughHandler(t *testing.T) {
	s := New()
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	c := newClient(t, hs.URL).login()
	c.expectStatus("instance-id", http.StatusOK)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.rawGet(context.Background(), "instance-id"); err == nil {
		t.Fatal("closed server answered")
	}
}

func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := goleak.IgnoreCurrent()
	s := New()
	ep1, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ep2, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	hc := &http.Client{Transport: tr}
	c1 := &client{t: t, base: ep1, hc: hc}
	c2 := &client{t: t, base: ep2, hc: hc}
	c1.login()
	c2.token = c1.token
	s.SetFault("instance-id", Fault{Kind: FaultHang})
	s.SetFault("ami-id", Fault{Kind: FaultSlow, Delay: time.Hour})
	done := make(chan error, 2)
	go func() { _, _, err := c1.rawGet(context.Background(), "instance-id"); done <- err }()
	go func() { _, _, err := c2.rawGet(context.Background(), "ami-id"); done <- err }()
	waitFor(t, "both requests in flight", func() bool {
		return s.Requests("/latest/meta-data/instance-id") == 1 && s.Requests("/latest/meta-data/ami-id") == 1
	})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-done; err == nil {
			t.Error("a blocked request got an answer after Close")
		}
	}
	tr.CloseIdleConnections()
	goleak.VerifyNone(t, before)
}
