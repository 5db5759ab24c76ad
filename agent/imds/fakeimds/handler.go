package fakeimds

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// reply is a complete response, built under s.mu and written after it is
// released so that a slow client never holds the lock.
type reply struct {
	status int
	body   string
	ttl    string // echoed TTL header of a token response
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		// A closed IMDS answers nothing (also when Handler is mounted
		// elsewhere, e.g. httptest).
		s.mu.Unlock()
		hijackAndClose(w, false)
		return
	}
	s.activeWG.Add(1)
	defer s.activeWG.Done()
	s.counts[counterKey(r)]++
	f := s.faultFor(r)
	s.mu.Unlock()

	w.Header().Set("Server", "EC2ws")
	if s.injectFault(w, r, f) {
		return
	}

	s.mu.Lock()
	rep := s.respond(r)
	s.mu.Unlock()

	if rep.status != http.StatusOK {
		writeError(w, rep.status)
		return
	}
	if rep.ttl != "" {
		w.Header().Set(TokenTTLHeader, rep.ttl)
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if f.Kind == FaultTrickle {
		s.trickle(w, r, rep.body, f.Delay)
		return
	}
	_, _ = w.Write([]byte(rep.body))
}

// trickle writes body one byte at a time, pausing delay before each, as a
// congested or overloaded IMDS might. It stops when the client goes away
// or the server closes.
func (s *Server) trickle(w http.ResponseWriter, r *http.Request, body string, delay time.Duration) {
	fl, _ := w.(http.Flusher)
	t := time.NewTimer(delay)
	defer t.Stop()
	for i := 0; i < len(body); i++ {
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		case <-s.closing:
			return
		}
		if _, err := w.Write([]byte{body[i]}); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		t.Reset(delay)
	}
}

// respond computes the answer to a request without faults; caller holds
// s.mu.
func (s *Server) respond(r *http.Request) reply {
	path := r.URL.Path
	if path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			return reply{status: http.StatusMethodNotAllowed}
		}
		status, tok, ttl := s.issueToken(r)
		return reply{status: status, body: tok, ttl: ttl}
	}
	if status, refused := s.refusal(r); refused {
		return reply{status: status}
	}
	var rel string
	switch {
	case path == "/latest" || path == "/latest/":
		rel = ""
	case strings.HasPrefix(path, "/latest/"):
		rel = strings.TrimPrefix(path, "/latest/")
	default:
		return reply{status: http.StatusNotFound}
	}
	segs, ok := splitPath(rel)
	if !ok {
		return reply{status: http.StatusNotFound}
	}
	n := s.root.lookup(segs)
	if n == nil {
		return reply{status: http.StatusNotFound}
	}

	// An ENI still propagating: device-number reads 0, missing keys 404
	// and are not listed.
	var skip func(string) bool
	if len(segs) >= 5 && segs[0] == "meta-data" && segs[1] == "network" &&
		segs[2] == "interfaces" && segs[3] == "macs" {
		if win, ok := s.activeWindow(segs[4]); ok {
			if len(segs) >= 6 && win.missing[segs[5]] {
				return reply{status: http.StatusNotFound}
			}
			if len(segs) == 6 && segs[5] == "device-number" && !n.isDir() {
				return reply{status: http.StatusOK, body: "0"}
			}
			if len(segs) == 5 {
				skip = func(name string) bool { return win.missing[name] }
			}
		}
	}
	if n.isDir() {
		return reply{status: http.StatusOK, body: n.listing(skip)}
	}
	return reply{status: http.StatusOK, body: n.value}
}

// refusal returns the status a metadata request (not a token request) is
// refused with: a method other than GET and HEAD, a token RejectTokens
// rejected, or one missing, unknown or expired; caller holds s.mu.
func (s *Server) refusal(r *http.Request) (status int, refused bool) {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodPut:
		// IMDS refuses token PUTs to anything but /latest/api/token
		// (dated versions included) with 403.
		return http.StatusForbidden, true
	default:
		return http.StatusMethodNotAllowed, true
	}
	tok := r.Header.Get(TokenHeader)
	if status, ok := s.rejected[tok]; ok && tok != "" {
		return status, true
	}
	if !s.validToken(tok) {
		return http.StatusUnauthorized, true
	}
	return 0, false
}

// writeError answers with a status and the small HTML page IMDS sends
// with it (clients must not mistake it for a value).
func writeError(w http.ResponseWriter, status int) {
	text := fmt.Sprintf("%d - %s", status, http.StatusText(status))
	body := `<?xml version="1.0" encoding="iso-8859-1"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Transitional//EN"
	"http://www.w3.org/TR/xhtml1/DTD/xhtml1-transitional.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">
 <head>
  <title>` + text + `</title>
 </head>
 <body>
  <h1>` + text + `</h1>
 </body>
</html>
`
	w.Header().Set("Content-Type", "text/html")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
