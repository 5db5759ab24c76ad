// Package fakeimds is a fake EC2 Instance Metadata Service (IMDSv2 only)
// for tests and the demo. It serves a metadata tree the way the real service
// does (see docs in shared/reference/imds.md): session tokens with TTLs,
// text listings with sub-directories marked by a trailing slash, 404 for
// absent keys, newline-separated multi-valued keys. On top of that it can
// attach and detach ENIs at runtime, delay their propagation (device-number
// reads 0, some keys 404 for a while), inject faults (error codes, hangs,
// garbage, truncated and trickled bodies, connection resets), refuse
// issued tokens with a chosen status (RejectTokens) or issue absurdly large
// ones (SetTokenSize), and count requests and connections. BlackHole
// gives an endpoint that never answers at all.
//
// Every method is safe for concurrent use while the server is serving.
package fakeimds

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/ec2net/ec2net/netconf/nsutil"
	"github.com/vishvananda/netns"
)

// Header names of the IMDSv2 token protocol (canonical form).
const (
	TokenHeader    = "X-Aws-Ec2-Metadata-Token"
	TokenTTLHeader = "X-Aws-Ec2-Metadata-Token-Ttl-Seconds"
	// MaxTokenTTL is the largest TTL IMDS accepts (6 hours).
	MaxTokenTTL = 21600
)

// Server is a fake IMDS. Create it with New, NewFromTree, LoadTree or Tree.
type Server struct {
	// Now is the clock used for token expiry and propagation windows.
	// Replace it before serving (or use SetClock while serving); Advance
	// moves it forward without replacing it.
	Now func() time.Time

	mu        sync.Mutex
	root      *node // {"meta-data": ..., "dynamic": ...}
	clockSkew time.Duration
	tokens    map[string]time.Time // token -> expiry
	rejected  map[string]int       // token -> status answered to GETs carrying it (RejectTokens)
	tokenSize int                  // bytes of issued tokens; 0 = like real ones (56)
	conns     int                  // TCP connections accepted

	propagation        time.Duration
	propagationMissing []string
	windows            map[string]window // MAC -> propagation window

	faults []pathFault // in the order set; the latest matching one applies

	counts map[string]int

	// synthDocument: the identity document is generated (New), so it
	// follows SetPrimaryMAC; trees keep the document they came with.
	synthDocument bool

	closed   bool
	closing  chan struct{} // closed by Close: unblocks hung and slow handlers
	servers  []*http.Server
	serveWG  sync.WaitGroup // Serve goroutines
	activeWG sync.WaitGroup // handlers in flight
}

// window is one ENI's propagation window.
type window struct {
	until   time.Time
	missing map[string]bool
}

func newServer(root *node) *Server {
	for _, top := range []string{"meta-data", "dynamic"} {
		if c, ok := root.children[top]; !ok || !c.isDir() {
			root.children[top] = newDir()
		}
	}
	return &Server{
		Now:      time.Now,
		root:     root,
		tokens:   map[string]time.Time{},
		rejected: map[string]int{},
		windows:  map[string]window{},
		counts:   map[string]int{},
		closing:  make(chan struct{}),
	}
}

// Identity of the instance New creates. The account id is the one AWS
// documentation uses in its examples.
const (
	defaultInstanceID = "i-0fa4e2d1c0ffee001"
	defaultAccountID  = "111122223333"
	defaultRegion     = "us-east-2"
	defaultAZ         = "us-east-2a"
	defaultType       = "m6i.large"
	defaultAMI        = "ami-0a1b2c3d4e5f60718"
)

// New returns an instance with identity keys and an empty
// network/interfaces/macs/ directory. Add the primary ENI with AttachENI
// and SetPrimaryMAC.
func New() *Server {
	s := newServer(newDir())
	md := s.metaData()
	for k, v := range map[string]string{
		"ami-id":                       defaultAMI,
		"ami-launch-index":             "0",
		"instance-id":                  defaultInstanceID,
		"instance-type":                defaultType,
		"placement/region":             defaultRegion,
		"placement/availability-zone":  defaultAZ,
		"services/domain":              "amazonaws.com",
		"services/partition":           "aws",
		"events/maintenance/scheduled": "[]",
		"events/maintenance/history":   "[]",
	} {
		segs, _ := splitPath(k)
		md.set(segs, v)
	}
	md.mkdirs([]string{"network", "interfaces", "macs"})
	s.synthDocument = true
	s.refreshDocumentLocked()
	return s
}

// NewFromTree serves a tree in the imds-trees JSON format:
// {"meta-data": {...}, "dynamic": {...}}, object = directory, string = leaf.
// The tree is copied.
func NewFromTree(tree map[string]any) *Server {
	return newServer(nodeFromJSON(tree))
}

// LoadTree reads an imds-trees/*.json file.
func LoadTree(path string) (*Server, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("fakeimds: %w", err)
	}
	return parseTree(b, path)
}

func parseTree(b []byte, name string) (*Server, error) {
	var tree map[string]any
	if err := json.Unmarshal(b, &tree); err != nil {
		return nil, fmt.Errorf("fakeimds: %s: %w", name, err)
	}
	if _, ok := tree["meta-data"].(map[string]any); !ok {
		return nil, fmt.Errorf("fakeimds: %s: no \"meta-data\" object", name)
	}
	return NewFromTree(tree), nil
}

//go:embed testdata/*.json
var trees embed.FS

// TreeNames lists the embedded trees Tree accepts.
func TreeNames() []string { return []string{"real01", "real02", "real03"} }

// Tree returns a server for one of the embedded trees captured on real EC2
// ("real01", "real02", "real03"; see testdata/README.md).
func Tree(name string) (*Server, error) {
	b, err := trees.ReadFile("testdata/" + name + ".json")
	if err != nil {
		return nil, fmt.Errorf("fakeimds: no embedded tree %q (have %v)", name, TreeNames())
	}
	return parseTree(b, name)
}

func (s *Server) metaData() *node { return s.root.children["meta-data"] }

// now is the server's clock; callers hold s.mu.
func (s *Server) now() time.Time {
	clock := s.Now
	if clock == nil {
		clock = time.Now
	}
	return clock().Add(s.clockSkew)
}

// SetClock replaces Now safely while serving.
func (s *Server) SetClock(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Now = now
}

// Advance moves the server's clock forward by d (tokens expire,
// propagation windows end) without any real waiting.
func (s *Server) Advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clockSkew += d
}

// Handler serves /latest/... . Using it directly (httptest) is fine; Close
// still unblocks its hung handlers.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// quietLog drops net/http's own error lines (hijacked and reset
// connections are intended here).
var quietLog = log.New(io.Discard, "", 0)

// Start listens on addr (e.g. "127.0.0.1:0"), serves in the background and
// returns the endpoint URL, e.g. "http://127.0.0.1:41234".
func (s *Server) Start(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fakeimds: listen %s: %w", addr, err)
	}
	return s.serve(ln)
}

// StartInNetNS creates the listening socket inside the named network
// namespace (/run/netns/<nsName>), e.g. on "169.254.169.254:80", and serves
// in the background. The socket stays in that namespace whatever thread
// later accepts on it. The address need not be configured yet
// (IP_FREEBIND): connections arrive once it is.
func (s *Server) StartInNetNS(nsName string, addr string) (string, error) {
	ns, err := netns.GetFromName(nsName)
	if err != nil {
		return "", fmt.Errorf("fakeimds: namespace %s: %w", nsName, err)
	}
	defer ns.Close()
	lc := net.ListenConfig{Control: nsutil.FreeBind}
	var ln net.Listener
	err = nsutil.Do(ns, func() error {
		var lerr error
		// The context only bounds the listen call itself.
		ln, lerr = lc.Listen(context.Background(), "tcp", addr)
		return lerr
	})
	if err != nil {
		if ln != nil {
			ln.Close()
		}
		return "", fmt.Errorf("fakeimds: listen %s in %s: %w", addr, nsName, err)
	}
	return s.serve(ln)
}

func (s *Server) serve(ln net.Listener) (string, error) {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          quietLog,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				s.mu.Lock()
				s.conns++
				s.mu.Unlock()
			}
		},
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return "", errors.New("fakeimds: server closed")
	}
	s.servers = append(s.servers, srv)
	s.serveWG.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.serveWG.Done()
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return "http://" + ln.Addr().String(), nil
}

// Close stops every listener, closes open connections, unblocks hung and
// slow handlers, and waits until all of the server's goroutines are done.
// Closing twice is fine.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	// Listeners first, so that a client retrying after its hung request is
	// dropped finds nobody listening, then release the handlers.
	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	close(s.closing)
	s.serveWG.Wait()
	s.activeWG.Wait()
	return errors.Join(errs...)
}

// Requests returns how many requests arrived for one exact path, e.g.
// "/latest/meta-data/network/interfaces/macs/"; token PUTs are counted
// under "PUT /latest/api/token".
func (s *Server) Requests(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[path]
}

// RequestCounts returns a copy of every counter (path -> count).
func (s *Server) RequestCounts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.counts))
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// TotalRequests is the sum of every counter.
func (s *Server) TotalRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.counts {
		n += v
	}
	return n
}

// ResetCounters zeroes every counter (requests and connections).
func (s *Server) ResetCounters() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.conns = 0
}

// Connections returns how many TCP connections the listeners started by
// Start or StartInNetNS accepted (not those of a Handler mounted
// elsewhere), so tests can see connection reuse.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// counterKey: GET and HEAD count under the path, anything else under
// "METHOD path".
func counterKey(r *http.Request) string {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return r.URL.Path
	}
	return r.Method + " " + r.URL.Path
}
