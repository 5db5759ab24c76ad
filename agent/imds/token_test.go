package imds

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/ec2net/ec2net/agent/imds/fakeimds"
)

const tokenPUT = "PUT /latest/api/token"

func TestOversizedTokenRefusedAndNotCached(t *testing.T) {
	s := instance(1)
	s.SetTokenSize(MaxTokenBytes + 1)
	o := fastOptions(startFake(t, s))
	c := newClient(t, o)
	_, err := c.Snapshot(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("more than %d bytes", MaxTokenBytes)) {
		t.Fatalf("err %v, want the token refused", err)
	}
	if n := s.Requests("/latest/meta-data/mac"); n != 0 {
		t.Fatalf("%d GETs carried the oversized token", n)
	}
	// Not cached: every attempt asked for a new one.
	if n := s.Requests(tokenPUT); n != o.Attempts {
		t.Fatalf("%d token PUTs, want %d (one per attempt)", n, o.Attempts)
	}
	if st := c.Stats(); st.Garbage != int64(o.Attempts) {
		t.Fatalf("stats %v: refused tokens not counted as garbage", st)
	}
	// A token of a real size is taken at once.
	s.SetTokenSize(0)
	mustSnapshot(t, c)
	// The bound itself is accepted.
	s.SetTokenSize(MaxTokenBytes)
	mustSnapshot(t, newClient(t, o))
}

// A token IMDS rejects with 400, 431 or 403 is dropped and a new one
// fetched, as after a 401: the SDK alone would keep sending it.
func TestRejectedTokenReplaced(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge, http.StatusForbidden} {
		t.Run(fmt.Sprint(status), func(t *testing.T) {
			s := instance(2)
			c := newClient(t, fastOptions(startFake(t, s)))
			mustSnapshot(t, c)
			s.RejectTokens(status)
			snap := mustSnapshot(t, c)
			for _, e := range snap.ENIs {
				wantState(t, &e, Complete, "")
			}
			if n := s.Requests(tokenPUT); n != 2 {
				t.Fatalf("%d token PUTs, want 2 (one replacement)", n)
			}
		})
	}
}

// A 403 on a GET is retried once with a fresh token; a second 403 means
// IMDS is disabled.
func TestPersistent403IsDisabledAfterOneFreshToken(t *testing.T) {
	s := instance(1)
	c := newClient(t, fastOptions(startFake(t, s)))
	s.SetFault("", fakeimds.Fault{Kind: fakeimds.Fault403})
	_, err := c.Snapshot(ctxT(t))
	if !errors.Is(err, ErrDisabled) {
		t.Fatalf("err %v, want ErrDisabled", err)
	}
	if puts, gets := s.Requests(tokenPUT), s.Requests("/latest/meta-data/mac"); puts != 2 || gets != 2 {
		t.Fatalf("%d PUTs, %d GETs: want 2 and 2 (one retry with a fresh token)", puts, gets)
	}
}
