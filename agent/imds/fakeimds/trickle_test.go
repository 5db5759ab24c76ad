package fakeimds

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestFaultTrickleSendsTheBodyByteByByte(t *testing.T) {
	s, c := instance(t)
	s.SetFault("mac", Fault{Kind: FaultTrickle, Delay: 5 * time.Millisecond})
	req, err := http.NewRequest(http.MethodGet, c.base+"/latest/meta-data/mac", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set(TokenHeader, c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != int64(len(primary().MAC)) {
		t.Fatalf("status %d, length %d", resp.StatusCode, resp.ContentLength)
	}
	// Each Read returns what has arrived: one byte at a time.
	var got strings.Builder
	reads := 0
	buf := make([]byte, 64)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			reads++
			got.Write(buf[:n])
		}
		if err != nil {
			break
		}
	}
	if got.String() != primary().MAC {
		t.Fatalf("body %q", got.String())
	}
	if reads < len(primary().MAC)/2 {
		t.Fatalf("body arrived in %d reads: not trickled", reads)
	}
}

func TestFaultTrickleStopsWhenTheClientLeaves(t *testing.T) {
	s, c := instance(t)
	s.SetFault("mac", Fault{Kind: FaultTrickle, Delay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, _, err := c.rawGet(ctx, "mac")
		done <- err
	}()
	waitFor(t, "the trickled request to arrive", func() bool { return s.Requests("/latest/meta-data/mac") == 1 })
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a body trickling one byte an hour completed")
	}
	// Close (in the cleanup) would hang if the handler were still waiting.
}

func TestConnectionsCountsAcceptedConnections(t *testing.T) {
	s, c := instance(t) // the login used one connection
	for i := 0; i < 5; i++ {
		c.mustGet("mac")
	}
	if n := s.Connections(); n != 1 {
		t.Fatalf("%d connections for sequential requests over keep-alive, want 1", n)
	}
	c.hc.Transport.(*http.Transport).CloseIdleConnections()
	c.mustGet("mac")
	if n := s.Connections(); n != 2 {
		t.Fatalf("%d connections after closing the idle one, want 2", n)
	}
	s.ResetCounters()
	if n := s.Connections(); n != 0 {
		t.Fatalf("%d connections after ResetCounters", n)
	}
}

func TestBlackHoleNeverAnswers(t *testing.T) {
	ep, stop, err := BlackHole("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ep, "http://"))
	if err != nil {
		t.Fatalf("connect: %v (the backlog should take it)", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("PUT /latest/api/token HTTP/1.1\r\nHost: x\r\nX-Aws-Ec2-Metadata-Token-Ttl-Seconds: 60\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if line, err := bufio.NewReader(conn).ReadString('\n'); err == nil {
		t.Fatalf("black hole answered %q", line)
	} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
		t.Fatalf("read: %v, want a timeout", err)
	}
}
