package fakeimds

import (
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ExpireTokens forgets every issued token: the next GET with an old token
// gets 401, as after an IMDS restart.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// RejectTokens makes every token issued so far answer status (e.g. 400,
// 403, 431) to any GET that carries it, instead of being valid or 401.
// Tokens issued afterwards work normally. It models an IMDS that refuses a
// token the client keeps sending: a client that only drops its token on
// 401 never recovers.
func (s *Server) RejectTokens(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for tok := range s.tokens {
		s.rejected[tok] = status
	}
	clear(s.tokens)
}

// SetTokenSize makes tokens issued from now on n bytes long (still
// valid). Real tokens are 56 characters; n <= 0 restores that. Clients
// must refuse absurd sizes rather than cache them.
func (s *Server) SetTokenSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokenSize = max(n, 0)
}

func newToken(size int) string {
	b := make([]byte, 42)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	tok := base64.URLEncoding.EncodeToString(b)
	if size <= 0 {
		return tok
	}
	// Unique prefix, padded with printable filler to exactly size bytes.
	if size <= len(tok) {
		return tok[:size]
	}
	return tok + strings.Repeat("A", size-len(tok))
}

// PUT /latest/api/token. Caller holds s.mu.
func (s *Server) issueToken(r *http.Request) (status int, body string, ttl string) {
	if r.Header.Get("X-Forwarded-For") != "" {
		return http.StatusForbidden, "", ""
	}
	ttl = r.Header.Get(TokenTTLHeader)
	n, err := strconv.Atoi(ttl)
	if err != nil || n < 1 || n > MaxTokenTTL {
		return http.StatusBadRequest, "", ""
	}
	now := s.now()
	for t, exp := range s.tokens { // keep the map small in long demos
		if !now.Before(exp) {
			delete(s.tokens, t)
		}
	}
	if len(s.rejected) > 1000 {
		clear(s.rejected)
	}
	tok := newToken(s.tokenSize)
	s.tokens[tok] = now.Add(time.Duration(n) * time.Second)
	return http.StatusOK, tok, strconv.Itoa(n)
}

// validToken: caller holds s.mu.
func (s *Server) validToken(tok string) bool {
	if tok == "" {
		return false
	}
	exp, ok := s.tokens[tok]
	if !ok {
		return false
	}
	if !s.now().Before(exp) {
		delete(s.tokens, tok)
		return false
	}
	return true
}
