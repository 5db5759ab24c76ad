package fakeimds

import (
	"fmt"
	"net"
)

// BlackHole listens on addr (e.g. "127.0.0.1:0") and never accepts: the
// kernel completes the first handshakes into the backlog, takes the
// request bytes and nothing ever answers; once the backlog is full, SYNs
// go unanswered. That is what a client sees where 169.254.169.254 leads
// nowhere (any machine that is not an EC2 instance), without needing a
// namespace. It returns the endpoint URL and a function that closes the
// listener (the client then sees resets).
func BlackHole(addr string) (endpoint string, stop func() error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("fakeimds: listen %s: %w", addr, err)
	}
	return "http://" + ln.Addr().String(), ln.Close, nil
}
