package imds

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// countingDoer sits between the SDK and the HTTP client. It counts every
// request by outcome and every TCP connection opened, records statuses for
// the attempt in progress, caps the body the SDK will read (the SDK reads
// bodies whole), refuses implausible tokens before the SDK can cache them,
// and turns every GET answer that rejects the token into a 401: the SDK
// drops its cached token on 401 only, and would otherwise keep sending a
// token IMDS refuses (400, 431, or 403) for its whole TTL.
type countingDoer struct {
	inner    *http.Client
	stats    *counters
	answered *atomic.Bool
	trace    *httptrace.ClientTrace

	mu       sync.Mutex
	rejected string // the token last rejected, already dropped
}

func newCountingDoer(inner *http.Client, stats *counters, answered *atomic.Bool) *countingDoer {
	return &countingDoer{inner: inner, stats: stats, answered: answered, trace: &httptrace.ClientTrace{
		ConnectDone: func(_, _ string, err error) {
			if err == nil {
				stats.connections.Add(1)
			}
		},
	}}
}

// sdkTokenHeader is the header the SDK sends the token in.
const sdkTokenHeader = "X-Aws-Ec2-Metadata-Token"

func (d *countingDoer) Do(req *http.Request) (*http.Response, error) {
	rec := recordFrom(req.Context())
	isToken := req.Method == http.MethodPut
	d.stats.requests.Add(1)
	if isToken {
		d.stats.tokenFetches.Add(1)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), d.trace))
	start := time.Now()
	resp, err := d.inner.Do(req)
	d.stats.observe(time.Since(start))
	if err != nil {
		d.stats.networkError.Add(1)
		return resp, err
	}
	d.answered.Store(true)
	if rec != nil {
		rec.gotResponse.Store(true)
		if isToken {
			rec.putStatus.Store(int32(resp.StatusCode))
		} else {
			rec.getStatus.Store(int32(resp.StatusCode))
		}
	}
	d.count(resp.StatusCode)
	if isToken && resp.StatusCode == http.StatusOK {
		return d.checkToken(resp, rec)
	}
	if tok := req.Header.Get(sdkTokenHeader); !isToken && tok != "" &&
		(resp.StatusCode == http.StatusForbidden || tokenRejected(resp.StatusCode)) {
		d.rejectToken(resp, tok)
	}
	resp.Body = &cappedBody{rc: resp.Body, left: MaxBodyBytes + 1, rec: rec, stats: d.stats, countOK: resp.StatusCode == http.StatusOK}
	return resp, nil
}

// rejectToken makes the SDK drop the token a GET was rejected for, once:
// the first rejection of a token becomes a 401 (the only status on which
// the SDK forgets its token). Further rejections of the same token come
// from requests that were already in flight; by then the SDK may hold a
// fresh token, and a second 401 would make it throw that one away too, so
// they become a status the SDK just reports. getN decides from the real
// status (kept in the attempt record) what to do: retry, or for a second
// 403, conclude that IMDS is disabled.
func (d *countingDoer) rejectToken(resp *http.Response, tok string) {
	d.mu.Lock()
	first := d.rejected != tok
	d.rejected = tok
	d.mu.Unlock()
	if first {
		resp.Status = fmt.Sprintf("401 Unauthorized (IMDS answered %d: token rejected)", resp.StatusCode)
		resp.StatusCode = http.StatusUnauthorized
		return
	}
	resp.Status = fmt.Sprintf("412 Precondition Failed (IMDS answered %d to a token already dropped)", resp.StatusCode)
	resp.StatusCode = http.StatusPreconditionFailed
}

// count files a response under its status.
func (d *countingDoer) count(code int) {
	switch {
	case code == http.StatusOK:
		// Counted when the body has been read to its end.
	case code == http.StatusNotFound:
		d.stats.notFound.Add(1)
	case code == http.StatusUnauthorized:
		d.stats.unauthorized.Add(1)
	case code == http.StatusForbidden:
		d.stats.forbidden.Add(1)
	case code == http.StatusTooManyRequests:
		d.stats.throttled.Add(1)
	case code >= 500:
		d.stats.serverError.Add(1)
	default:
		d.stats.otherStatus.Add(1)
	}
}

// errTokenRefused is returned to the SDK instead of a token it must not
// cache; it reports a send failure and keeps no token.
var errTokenRefused = errors.New("imds: token refused")

// checkToken reads a token PUT's body (at most MaxTokenBytes+1 bytes) and
// hands it on only if checkToken accepts it.
func (d *countingDoer) checkToken(resp *http.Response, rec *attemptRecord) (*http.Response, error) {
	b, err := io.ReadAll(io.LimitReader(resp.Body, MaxTokenBytes+1))
	resp.Body.Close()
	if err != nil {
		d.stats.networkError.Add(1)
		return nil, err
	}
	d.stats.ok.Add(1)
	if terr := checkToken(b); terr != nil {
		d.stats.garbage.Add(1)
		if rec != nil {
			rec.tokenRefused.Store("token PUT: " + terr.Error() + " (refused, not cached)")
		}
		return nil, fmt.Errorf("%w: %v", errTokenRefused, terr)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	resp.ContentLength = int64(len(b))
	return resp, nil
}

// cappedBody yields at most MaxBodyBytes+1 bytes, then EOF (and flags the
// attempt as too large), and counts a 200 as OK or NetworkError once its
// fate is known.
type cappedBody struct {
	rc      io.ReadCloser
	left    int64
	rec     *attemptRecord
	stats   *counters
	countOK bool
	done    bool
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		if b.rec != nil {
			b.rec.bodyTooBig.Store(true)
		}
		b.finish(nil)
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	if b.left <= 0 && b.rec != nil {
		b.rec.bodyTooBig.Store(true)
	}
	if err == io.EOF {
		b.finish(nil)
	} else if err != nil {
		b.finish(err)
	}
	return n, err
}

func (b *cappedBody) finish(err error) {
	if b.done || !b.countOK {
		b.done = true
		return
	}
	b.done = true
	if err != nil {
		b.stats.networkError.Add(1)
	} else {
		b.stats.ok.Add(1)
	}
}

func (b *cappedBody) Close() error {
	if !b.done && b.countOK {
		// Closed before the end (the reader gave up, e.g. on a timeout).
		b.finish(io.ErrUnexpectedEOF)
	}
	return b.rc.Close()
}
