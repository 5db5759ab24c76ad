package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
)

// Errors that make a whole snapshot unknown.
var (
	// ErrDisabled: IMDS answered 403 (turned off for this instance, or the
	// request was refused). Retrying will not help until someone changes
	// the instance's metadata options.
	ErrDisabled = errors.New("imds: access denied (403): IMDS is disabled or refuses this request")
	// ErrUnreachable: no HTTP answer at all on any attempt (connection
	// refused, reset before a response, timeout).
	ErrUnreachable = errors.New("imds: unreachable")
)

const (
	// EnvEndpoint is the SDK's (and ec2net's) endpoint override variable.
	EnvEndpoint         = "AWS_EC2_METADATA_SERVICE_ENDPOINT"
	defaultIPv4Endpoint = "http://169.254.169.254"
	defaultIPv6Endpoint = "http://[fd00:ec2::254]"
)

// Options configures a Client. Zero values take the defaults.
type Options struct {
	Endpoint       string        // "" → env AWS_EC2_METADATA_SERVICE_ENDPOINT → http://169.254.169.254 (or the IPv6 one)
	EndpointMode   string        // "ipv4" (default) or "ipv6" (http://[fd00:ec2::254])
	Version        string        // for the User-Agent "ec2net/<version>"
	Logger         *zap.Logger   // nil → zap.NewNop()
	Attempts       int           // per read, ec2net's own retry loop; default 4
	RequestTimeout time.Duration // per attempt (token PUT included); default 2s
	Backoff        BackoffConfig // between attempts and for pending re-reads
	HTTPClient     *http.Client  // optional (tests); redirects are never followed
}

// Client reads IMDS into Snapshots. It is safe for concurrent use; each
// snapshot issues its requests one after another, never in parallel, to
// stay far below the link-local packet budget (imds.md §3).
type Client struct {
	opts     Options
	endpoint string
	log      *zap.Logger
	sdk      *sdkimds.Client
	stats    counters

	mu         sync.Mutex
	primaryMAC string                // top-level mac, static for the instance's life
	fixed      map[string]*fixedKeys // by MAC, only for ENIs last seen Complete
}

// New returns a Client. It does no I/O.
func New(o Options) (*Client, error) {
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Attempts <= 0 {
		o.Attempts = 4
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	o.Backoff = o.Backoff.withDefaults()

	mode := sdkimds.EndpointModeStateIPv4
	endpoint := o.Endpoint
	switch o.EndpointMode {
	case "", "ipv4":
		o.EndpointMode = "ipv4"
	case "ipv6":
		mode = sdkimds.EndpointModeStateIPv6
	default:
		return nil, fmt.Errorf("imds: endpoint mode %q: must be ipv4 or ipv6", o.EndpointMode)
	}
	if endpoint == "" {
		endpoint = os.Getenv(EnvEndpoint)
	}
	if endpoint == "" {
		endpoint = defaultIPv4Endpoint
		if mode == sdkimds.EndpointModeStateIPv6 {
			endpoint = defaultIPv6Endpoint
		}
	}
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("imds: endpoint %q: must be an http:// or https:// URL", endpoint)
	}

	inner := o.HTTPClient
	if inner == nil {
		inner = &http.Client{Transport: &http.Transport{
			// IMDS is link-local: a proxy from the environment must never
			// see the request (nor the token).
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: o.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:          2,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: o.RequestTimeout,
			DisableCompression:    true,
		}}
	}
	// Never follow a redirect: the token header would go with it.
	noRedirect := *inner
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	c := &Client{
		opts:     o,
		endpoint: endpoint,
		log:      o.Logger,
		fixed:    map[string]*fixedKeys{},
	}
	c.sdk = sdkimds.New(sdkimds.Options{
		Endpoint:     endpoint,
		EndpointMode: mode,
		HTTPClient:   &countingDoer{inner: &noRedirect, stats: &c.stats},
		// One attempt per SDK call: ec2net's loop retries, with its own
		// backoff, and can classify every failure. The SDK's standard
		// retryer would also spend a client-wide retry quota that a long
		// outage exhausts.
		Retryer:                  aws.NopRetryer{},
		DisableDefaultMaxBackoff: true,
		ClientEnableState:        sdkimds.ClientEnabled,
		// IMDSv2 only: a failed token PUT is an error, never a tokenless GET.
		EnableFallback: aws.FalseTernary,
		APIOptions: []func(*middleware.Stack) error{
			awsmiddleware.AddUserAgentKeyValue("ec2net", o.Version),
		},
	})
	return c, nil
}

// Endpoint returns the endpoint the client talks to.
func (c *Client) Endpoint() string { return c.endpoint }

// outcome is what one read (all its attempts) came to.
type outcome int

const (
	outValue    outcome = iota // 200 with a body that parsed
	outAbsent                  // 404: authoritatively not there
	outUnknown                 // no usable answer: status, network, empty body
	outInvalid                 // IMDS answered, consistently, with something that does not validate
	outDisabled                // 403
)

// readResult is the result of one read.
type readResult struct {
	out outcome
	// unreachable: not a single attempt got an HTTP response.
	unreachable bool
	reason      string // one line, for Unknown/Invalid/Disabled
}

func (r readResult) err(path string) error {
	switch {
	case r.out == outDisabled:
		return fmt.Errorf("%w (reading %s)", ErrDisabled, path)
	case r.unreachable:
		return fmt.Errorf("%w: reading %s: %s", ErrUnreachable, path, r.reason)
	}
	return fmt.Errorf("imds: reading %s: %s", path, r.reason)
}

// attemptRecord is attached to each attempt's context so that the HTTP
// wrapper can report what happened on the wire. The SDK hides the status
// in some errors (a 401 is wrapped in an error type without Unwrap), and a
// token PUT failure is reported as a GET failure; the record keeps both.
type attemptRecord struct {
	getStatus   atomic.Int32 // last GET status, 0 if none
	putStatus   atomic.Int32 // last token PUT status, 0 if none
	gotResponse atomic.Bool  // any HTTP response (GET or PUT)
	bodyTooBig  atomic.Bool
}

type recordKey struct{}

func recordFrom(ctx context.Context) *attemptRecord {
	r, _ := ctx.Value(recordKey{}).(*attemptRecord)
	return r
}

// get reads one metadata path with ec2net's retry loop. parse validates the
// body (and stores what it parsed); errEmpty from parse, and any failure to
// get a 200, count as unknown and are retried; other parse errors are
// retried too (a dropped packet can corrupt an answer) and, if every
// attempt's answer fails to parse, make the read invalid.
func (c *Client) get(ctx context.Context, path string, parse func(string) error) readResult {
	bo := NewBackoff(c.opts.Backoff)
	res := readResult{out: outUnknown, unreachable: true, reason: path + ": not read"}
	free401 := true // one 401 retry is free and immediate: token expiry is routine
	wait := false
	for attempt := 1; attempt <= c.opts.Attempts; attempt++ {
		if wait {
			t := time.NewTimer(bo.Next())
			select {
			case <-ctx.Done():
				t.Stop()
				res.out, res.reason = outUnknown, path+": "+ctx.Err().Error()
				return res
			case <-t.C:
			}
		}
		wait = true
		if ctx.Err() != nil {
			res.out, res.reason = outUnknown, path+": "+ctx.Err().Error()
			return res
		}
		rec := &attemptRecord{}
		actx, cancel := context.WithTimeout(context.WithValue(ctx, recordKey{}, rec), c.opts.RequestTimeout)
		start := time.Now()
		body, err := c.fetch(actx, path)
		cancel()
		if rec.gotResponse.Load() {
			res.unreachable = false
		}
		putStatus := int(rec.putStatus.Load())
		tokenFailed := putStatus != 0 && putStatus != http.StatusOK
		status := statusOf(err, rec)
		switch {
		case err == nil && rec.bodyTooBig.Load():
			c.stats.garbage.Add(1)
			c.debug(path, attempt, start, "body too large")
			// Deterministic: retrying would only cost requests.
			return readResult{out: outInvalid, reason: fmt.Sprintf("%s: body over %d bytes", path, MaxBodyBytes)}
		case err == nil:
			perr := parse(body)
			if perr == nil {
				c.debug(path, attempt, start, "ok")
				return readResult{out: outValue}
			}
			c.stats.garbage.Add(1)
			if errors.Is(perr, errEmpty) {
				res.out, res.reason = outUnknown, path+": empty answer"
			} else {
				res.out, res.reason = outInvalid, path+": "+perr.Error()
			}
		case tokenFailed && putStatus == http.StatusForbidden, !tokenFailed && status == http.StatusForbidden:
			c.debug(path, attempt, start, "403")
			return readResult{out: outDisabled, reason: path + ": 403 (IMDS disabled)"}
		case tokenFailed:
			res.out, res.reason = outUnknown, fmt.Sprintf("%s: token PUT answered %d", path, putStatus)
		case status == http.StatusNotFound:
			c.debug(path, attempt, start, "404")
			return readResult{out: outAbsent}
		case status == http.StatusUnauthorized:
			// The SDK dropped its token; the next attempt PUTs a new one.
			res.out, res.reason = outUnknown, path+": 401 (token rejected)"
			if free401 {
				free401, wait = false, false
				attempt--
			}
		default:
			if status == http.StatusOK {
				status = 0 // the body broke off after a 200: the error says how
			}
			res.out, res.reason = outUnknown, path+": "+describe(err, status)
		}
		c.debug(path, attempt, start, res.reason)
	}
	return res
}

// fetch does one SDK call and reads the body.
func (c *Client) fetch(ctx context.Context, path string) (string, error) {
	out, err := c.sdk.GetMetadata(ctx, &sdkimds.GetMetadataInput{Path: path})
	if err != nil {
		return "", err
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	return string(b), err
}

func (c *Client) debug(path string, attempt int, start time.Time, result string) {
	if ce := c.log.Check(zap.DebugLevel, "imds read"); ce != nil {
		ce.Write(zap.String("path", path), zap.Int("attempt", attempt),
			zap.Duration("took", time.Since(start)), zap.String("result", result))
	}
}

// statusOf finds the HTTP status of a failed GET: from the error when the
// SDK kept it, else from what the wire wrapper saw.
func statusOf(err error, rec *attemptRecord) int {
	if err == nil {
		return 0
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return int(rec.getStatus.Load())
}

func describe(err error, status int) string {
	if status != 0 {
		return fmt.Sprintf("status %d", status)
	}
	if err == nil {
		return "no answer"
	}
	msg := err.Error()
	// SDK errors nest several "op, cause" prefixes; the last clause says most.
	if i := strings.LastIndex(msg, ", "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return msg
}
