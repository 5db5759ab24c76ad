package imds

import (
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
)

// Stats counts HTTP requests to IMDS by outcome since the Client was made.
// Every request (token PUTs included) is counted once in Requests and once
// in exactly one of OK, NotFound, Unauthorized, Forbidden, Throttled,
// ServerError, OtherStatus, NetworkError. Garbage counts 200 answers whose
// body was empty, unparsable or too large (those are also in OK).
type Stats struct {
	Requests     int64 `json:"requests"`
	OK           int64 `json:"ok"`            // 200 with the body read to the end
	NotFound     int64 `json:"not_found"`     // 404
	Unauthorized int64 `json:"unauthorized"`  // 401 (token expired or lost)
	Forbidden    int64 `json:"forbidden"`     // 403 (IMDS disabled)
	Throttled    int64 `json:"throttled"`     // 429
	ServerError  int64 `json:"server_error"`  // 5xx
	OtherStatus  int64 `json:"other_status"`  // anything else
	NetworkError int64 `json:"network_error"` // no response, or the body broke off
	Garbage      int64 `json:"garbage"`
	TokenFetches int64 `json:"token_fetches"` // token PUTs (also counted above)
}

func (s Stats) String() string {
	return fmt.Sprintf("requests=%d ok=%d not_found=%d unauthorized=%d forbidden=%d throttled=%d server_error=%d other_status=%d network_error=%d garbage=%d token_fetches=%d",
		s.Requests, s.OK, s.NotFound, s.Unauthorized, s.Forbidden, s.Throttled, s.ServerError, s.OtherStatus, s.NetworkError, s.Garbage, s.TokenFetches)
}

type counters struct {
	requests, ok, notFound, unauthorized, forbidden, throttled, serverError,
	otherStatus, networkError, garbage, tokenFetches atomic.Int64
}

// Stats returns the request counters.
func (c *Client) Stats() Stats {
	s := &c.stats
	return Stats{
		Requests: s.requests.Load(), OK: s.ok.Load(), NotFound: s.notFound.Load(),
		Unauthorized: s.unauthorized.Load(), Forbidden: s.forbidden.Load(),
		Throttled: s.throttled.Load(), ServerError: s.serverError.Load(),
		OtherStatus: s.otherStatus.Load(), NetworkError: s.networkError.Load(),
		Garbage: s.garbage.Load(), TokenFetches: s.tokenFetches.Load(),
	}
}

// countingDoer sits between the SDK and the HTTP client: it counts every
// request by outcome, records statuses for the attempt in progress, and
// caps the body the SDK will read (the SDK reads bodies whole).
type countingDoer struct {
	inner *http.Client
	stats *counters
}

func (d *countingDoer) Do(req *http.Request) (*http.Response, error) {
	rec := recordFrom(req.Context())
	isToken := req.Method == http.MethodPut
	d.stats.requests.Add(1)
	if isToken {
		d.stats.tokenFetches.Add(1)
	}
	resp, err := d.inner.Do(req)
	if err != nil {
		d.stats.networkError.Add(1)
		return resp, err
	}
	if rec != nil {
		rec.gotResponse.Store(true)
		if isToken {
			rec.putStatus.Store(int32(resp.StatusCode))
		} else {
			rec.getStatus.Store(int32(resp.StatusCode))
		}
	}
	switch code := resp.StatusCode; {
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
	resp.Body = &cappedBody{rc: resp.Body, left: MaxBodyBytes + 1, rec: rec, stats: d.stats, countOK: resp.StatusCode == http.StatusOK}
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
