package imds

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Stats counts HTTP requests to IMDS by outcome since the Client was made.
// Every request (token PUTs included) is counted once in Requests and once
// in exactly one of OK, NotFound, Unauthorized, Forbidden, Throttled,
// ServerError, OtherStatus, NetworkError, by the status IMDS sent. Garbage
// counts 200 answers whose body was empty, unparsable or too large, and
// tokens refused (those are also in OK). Connections counts TCP
// connections opened, so Requests/Connections shows connection reuse.
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
	Connections  int64 `json:"connections"`   // TCP connections opened (requests/connections = reuse)
}

func (s Stats) String() string {
	return fmt.Sprintf("requests=%d ok=%d not_found=%d unauthorized=%d forbidden=%d throttled=%d server_error=%d other_status=%d network_error=%d garbage=%d token_fetches=%d connections=%d",
		s.Requests, s.OK, s.NotFound, s.Unauthorized, s.Forbidden, s.Throttled, s.ServerError, s.OtherStatus, s.NetworkError, s.Garbage, s.TokenFetches, s.Connections)
}

type counters struct {
	requests, ok, notFound, unauthorized, forbidden, throttled, serverError,
	otherStatus, networkError, garbage, tokenFetches, connections atomic.Int64
	latency atomic.Pointer[func(time.Duration)] // SetLatencyObserver (latency.go)
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
		Connections: s.connections.Load(),
	}
}
