package fakeimds

import (
	"net/http"
	"testing"
	"time"
)

func TestTokenPutReturnsTokenAndEchoesTTLHeader(t *testing.T) {
	_, c := instance(t)
	code, hdr, tok := c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: "300"})
	if code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if tok == "" {
		t.Fatal("empty token")
	}
	if got := hdr.Get(TokenTTLHeader); got != "300" {
		t.Fatalf("TTL header echoed as %q, want 300", got)
	}
	if ct := hdr.Get("Content-Type"); ct != "text/plain" {
		t.Fatalf("content type %q", ct)
	}
	_, _, tok2 := c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: "300"})
	if tok2 == tok {
		t.Fatal("two PUTs returned the same token")
	}
}

func TestTokenPutWithMissingOrBadTTLIs400(t *testing.T) {
	_, c := instance(t)
	for _, ttl := range []string{"", "abc", "0", "-1", "21601", "1.5"} {
		hdr := map[string]string{}
		if ttl != "" {
			hdr[TokenTTLHeader] = ttl
		}
		if code, _, _ := c.do(http.MethodPut, "/latest/api/token", hdr); code != http.StatusBadRequest {
			t.Errorf("TTL %q: status %d, want 400", ttl, code)
		}
	}
	for _, ttl := range []string{"1", "21600"} {
		if code, _, _ := c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: ttl}); code != http.StatusOK {
			t.Errorf("TTL %q: status %d, want 200", ttl, code)
		}
	}
}

func TestTokenPutWithForwardedForIs403(t *testing.T) {
	_, c := instance(t)
	code, _, _ := c.do(http.MethodPut, "/latest/api/token", map[string]string{
		TokenTTLHeader: "60", "X-Forwarded-For": "100.64.9.9"})
	if code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", code)
	}
}

func TestGetWithoutTokenIs401(t *testing.T) {
	_, c := instance(t)
	c.token = ""
	c.expectStatus("mac", http.StatusUnauthorized)
}

func TestGetWithUnknownTokenIs401(t *testing.T) {
	_, c := instance(t)
	c.token = "AQAEAnotatokenthisserverissued=="
	c.expectStatus("mac", http.StatusUnauthorized)
}

func TestTokenExpiresAfterItsTTL(t *testing.T) {
	s, c := instance(t)
	_, _, tok := c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: "60"})
	c.token = tok
	c.expectStatus("mac", http.StatusOK)
	s.Advance(59 * time.Second)
	c.expectStatus("mac", http.StatusOK)
	s.Advance(time.Second)
	c.expectStatus("mac", http.StatusUnauthorized)
}

func TestTokenExpiryFollowsReplacedClock(t *testing.T) {
	s := New()
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	s.Now = func() time.Time { return now }
	c := newClient(t, start(t, s))
	_, _, c.token = c.do(http.MethodPut, "/latest/api/token", map[string]string{TokenTTLHeader: "10"})
	c.expectStatus("instance-id", http.StatusOK)
	s.SetClock(func() time.Time { return now.Add(10 * time.Second) })
	c.expectStatus("instance-id", http.StatusUnauthorized)
}

func TestExpireTokensMakesOldTokens401(t *testing.T) {
	s, c := instance(t)
	c.expectStatus("mac", http.StatusOK)
	s.ExpireTokens()
	c.expectStatus("mac", http.StatusUnauthorized)
	c.login()
	c.expectStatus("mac", http.StatusOK)
}

func TestOnlyGetAndHeadServeData(t *testing.T) {
	_, c := instance(t)
	code, hdr, body := c.do(http.MethodHead, "/latest/meta-data/mac", map[string]string{TokenHeader: c.token})
	if code != http.StatusOK || body != "" || hdr.Get("Content-Length") != "17" {
		t.Fatalf("HEAD: %d %q content-length %q", code, body, hdr.Get("Content-Length"))
	}
	for _, m := range []string{http.MethodPost, http.MethodDelete} {
		if code, _, _ := c.do(m, "/latest/meta-data/mac", map[string]string{TokenHeader: c.token}); code != http.StatusMethodNotAllowed {
			t.Errorf("%s: %d, want 405", m, code)
		}
	}
	// A token PUT anywhere else (a dated version) is refused.
	if code, _, _ := c.do(http.MethodPut, "/2021-03-23/api/token", map[string]string{TokenTTLHeader: "60"}); code != http.StatusForbidden {
		t.Errorf("PUT dated token path: %d, want 403", code)
	}
	if code, _, _ := c.do(http.MethodGet, "/latest/api/token", map[string]string{TokenHeader: c.token}); code != http.StatusMethodNotAllowed {
		t.Errorf("GET token path: %d, want 405", code)
	}
}

func TestRejectTokensAnswersTheStatusToOldTokensOnly(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusForbidden, http.StatusRequestHeaderFieldsTooLarge} {
		s, c := instance(t)
		c.mustGet("mac")
		s.RejectTokens(status)
		c.expectStatus("mac", status)
		c.expectStatus("network/interfaces/macs/", status)
		c.login() // a fresh token works
		c.expectStatus("mac", http.StatusOK)
	}
}

func TestSetTokenSizeIssuesValidTokensOfThatSize(t *testing.T) {
	s, c := instance(t)
	for _, n := range []int{600, 70000, 10} {
		s.SetTokenSize(n)
		c.login()
		if len(c.token) != n {
			t.Fatalf("token of %d bytes, want %d", len(c.token), n)
		}
		c.expectStatus("mac", http.StatusOK)
	}
	s.SetTokenSize(0)
	c.login()
	if len(c.token) != 56 {
		t.Fatalf("default token of %d bytes, want 56", len(c.token))
	}
}
