package fakeimds

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"
)

// FaultKind is how a faulty request fails.
type FaultKind int

const (
	FaultNone      FaultKind = iota // answer normally (can exempt a path from a broader fault)
	Fault500                        // 500 Internal Server Error
	Fault429                        // 429 Too Many Requests (throttling)
	Fault403                        // 403 Forbidden (IMDS turned off)
	FaultHang                       // never answer: block until the client gives up or Close
	FaultSlow                       // wait Fault.Delay, then answer normally
	FaultGarbage                    // 200 with random non-printable bytes
	FaultTruncated                  // Content-Length larger than the body, then close
	FaultReset                      // close the connection with a TCP RST, no response
	Fault404                        // 404 even though the key exists
	Fault400                        // 400 Bad Request
	Fault431                        // 431 Request Header Fields Too Large (what IMDS answers to a huge token header)
	FaultTrickle                    // 200 with the real body, one byte every Fault.Delay
)

func (k FaultKind) String() string {
	switch k {
	case FaultNone:
		return "none"
	case Fault500:
		return "500"
	case Fault429:
		return "429"
	case Fault403:
		return "403"
	case FaultHang:
		return "hang"
	case FaultSlow:
		return "slow"
	case FaultGarbage:
		return "garbage"
	case FaultTruncated:
		return "truncated"
	case FaultReset:
		return "reset"
	case Fault404:
		return "404"
	case Fault400:
		return "400"
	case Fault431:
		return "431"
	case FaultTrickle:
		return "trickle"
	}
	return fmt.Sprintf("fault(%d)", int(k))
}

// Fault is injected into matching requests.
type Fault struct {
	Kind  FaultKind
	Delay time.Duration // FaultSlow: how long to wait before answering; FaultTrickle: the pause before each byte
	Token bool          // also apply to PUT /latest/api/token
}

type pathFault struct {
	prefix string
	fault  Fault
}

// SetFault makes requests whose path starts with pathPrefix fail as f.
// The path is matched after "/latest/meta-data/" (e.g. "network/" or
// "mac"); paths outside meta-data are matched after "/latest/" (e.g.
// "dynamic/"). "" matches every data request. With f.Token the fault also
// applies to the token PUT, whatever the prefix.
//
// When several prefixes match a request, the one set most recently wins;
// setting a prefix again replaces its fault. A FaultNone entry therefore
// exempts a path from an earlier, broader fault.
func (s *Server) SetFault(pathPrefix string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, pf := range s.faults {
		if pf.prefix == pathPrefix {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			break
		}
	}
	s.faults = append(s.faults, pathFault{prefix: pathPrefix, fault: f})
}

// ClearFaults removes every fault.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// faultFor returns the fault that applies to a request; caller holds s.mu.
func (s *Server) faultFor(r *http.Request) Fault {
	isToken := r.Method == http.MethodPut
	rel := faultPath(r.URL.Path)
	for i := len(s.faults) - 1; i >= 0; i-- {
		pf := s.faults[i]
		if isToken {
			if pf.fault.Token {
				return pf.fault
			}
			continue
		}
		if strings.HasPrefix(rel, pf.prefix) {
			return pf.fault
		}
	}
	return Fault{}
}

func faultPath(p string) string {
	if p == "/latest/meta-data" {
		return ""
	}
	if rel, ok := strings.CutPrefix(p, "/latest/meta-data/"); ok {
		return rel
	}
	return strings.TrimPrefix(p, "/latest/")
}

// injectFault acts out f. It reports whether the request was fully handled
// (false: answer normally, after a FaultSlow delay).
func (s *Server) injectFault(w http.ResponseWriter, r *http.Request, f Fault) bool {
	switch f.Kind {
	case FaultNone:
		return false
	case Fault500:
		writeError(w, http.StatusInternalServerError)
	case Fault429:
		writeError(w, http.StatusTooManyRequests)
	case Fault403:
		writeError(w, http.StatusForbidden)
	case Fault404:
		writeError(w, http.StatusNotFound)
	case Fault400:
		writeError(w, http.StatusBadRequest)
	case Fault431:
		writeError(w, http.StatusRequestHeaderFieldsTooLarge)
	case FaultTrickle:
		// Answered by serveHTTP once the body is known.
		return false
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-s.closing:
		}
		// Whatever the client still expects, it gets no answer: drop the
		// connection instead of letting net/http send an empty 200.
		hijackAndClose(w, false)
	case FaultSlow:
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		select {
		case <-t.C:
			return false
		case <-r.Context().Done():
			hijackAndClose(w, false)
		case <-s.closing:
			hijackAndClose(w, false)
		}
	case FaultGarbage:
		writeGarbage(w)
	case FaultTruncated:
		writeTruncated(w)
	case FaultReset:
		hijackAndClose(w, true)
	default:
		writeError(w, http.StatusInternalServerError)
	}
	return true
}

// writeGarbage answers 200 with a body of random unprintable bytes.
func writeGarbage(w http.ResponseWriter) {
	b := make([]byte, 32+rand.IntN(64))
	for i := range b {
		// Control characters and bytes >= 0x7f: nothing printable.
		if c := byte(rand.IntN(0x20 + 0x81)); c < 0x20 {
			b[i] = c
		} else {
			b[i] = c - 0x20 + 0x7f
		}
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Content-Length", fmt.Sprint(len(b)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeTruncated answers 200 with a Content-Length 64 bytes longer than
// the body it sends before closing the connection.
func writeTruncated(w http.ResponseWriter) {
	conn, buf := hijack(w)
	if conn == nil {
		return
	}
	body := "100.64."
	fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nServer: EC2ws\r\n\r\n%s",
		len(body)+64, body)
	_ = buf.Flush()
	conn.Close()
}

func hijack(w http.ResponseWriter) (net.Conn, *bufio.ReadWriter) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		return nil, nil
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return nil, nil
	}
	return conn, buf
}

// hijackAndClose drops the connection; with reset, as an RST (SO_LINGER 0)
// so the client sees "connection reset by peer".
func hijackAndClose(w http.ResponseWriter, reset bool) {
	conn, _ := hijack(w)
	if conn == nil {
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	conn.Close()
}
