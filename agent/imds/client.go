package imds

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/smithy-go/middleware"
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

// Defaults of the Options that bound time and concurrency.
const (
	DefaultPassTimeout  = 15 * time.Second
	DefaultConcurrency  = 4
	DefaultFirstContact = 2500 * time.Millisecond
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

	// PassTimeout bounds one whole pass (Snapshot, SnapshotFull, one
	// round of SnapshotSettled, ReadENIs): what is not read by then is
	// Unknown, never absent. Default DefaultPassTimeout (15 s).
	PassTimeout time.Duration
	// Concurrency is how many ENIs a pass reads at once (the keys of one
	// ENI are read in order). One token and one connection pool serve
	// them all. Default DefaultConcurrency (4); 1 reads sequentially.
	Concurrency int
	// FirstContact bounds every read until IMDS has answered this client
	// once (any HTTP status): on a machine where 169.254.169.254 leads
	// nowhere, the first read gives up with ErrUnreachable after this
	// long instead of going through every attempt. After FirstContact×0.4
	// without an answer, "no answer yet from IMDS" is logged at info, once
	// per Client. Default DefaultFirstContact (2.5 s), so that `status`,
	// `plan` and `apply` answer within 3 s off EC2; a daemon may pass
	// more. Negative: no such bound.
	FirstContact time.Duration
	// PollInterval is how often Settle peeks at the key a pending ENI
	// waits on. Default DefaultPollInterval (150 ms).
	PollInterval time.Duration
}

// Client reads IMDS into Snapshots. It is safe for concurrent use. A pass
// reads up to Options.Concurrency ENIs at once over one token and one
// connection pool: a few requests in flight at most, far below the
// link-local packet budget (imds.md §3).
type Client struct {
	opts     Options
	endpoint string
	log      *zap.Logger
	sdk      *sdkimds.Client
	stats    counters

	answered  atomic.Bool // IMDS has answered at least once (any status)
	waitNoted sync.Once   // the first-contact "no answer yet" line

	mu         sync.Mutex
	primaryMAC string                // top-level mac, static for the instance's life
	fixed      map[string]*fixedKeys // by MAC, only for ENIs last seen Complete
}

// New returns a Client. It does no I/O.
func New(o Options) (*Client, error) {
	o.setDefaults()
	mode, endpoint, err := resolveEndpoint(&o)
	if err != nil {
		return nil, err
	}
	inner := o.HTTPClient
	if inner == nil {
		inner = defaultHTTPClient(o)
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
		HTTPClient:   newCountingDoer(&noRedirect, &c.stats, &c.answered),
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

// setDefaults fills in the zero Options.
func (o *Options) setDefaults() {
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
	if o.PassTimeout <= 0 {
		o.PassTimeout = DefaultPassTimeout
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.FirstContact == 0 {
		o.FirstContact = DefaultFirstContact
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	o.Backoff = o.Backoff.withDefaults()
}

// resolveEndpoint picks the endpoint: Options.Endpoint, else the
// environment, else the default of the endpoint mode.
func resolveEndpoint(o *Options) (sdkimds.EndpointModeState, string, error) {
	mode := sdkimds.EndpointModeStateIPv4
	endpoint := o.Endpoint
	switch o.EndpointMode {
	case "", "ipv4":
		o.EndpointMode = "ipv4"
	case "ipv6":
		mode = sdkimds.EndpointModeStateIPv6
	default:
		return mode, "", fmt.Errorf("imds: endpoint mode %q: must be ipv4 or ipv6", o.EndpointMode)
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
		return mode, "", fmt.Errorf("imds: endpoint %q: must be an http:// or https:// URL", endpoint)
	}
	return mode, endpoint, nil
}

// defaultHTTPClient is the transport for IMDS: no proxy, short timeouts,
// a keep-alive pool as large as a pass needs.
func defaultHTTPClient(o Options) *http.Client {
	return &http.Client{Transport: &http.Transport{
		// IMDS is link-local: a proxy from the environment must never
		// see the request (nor the token).
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: o.RequestTimeout, KeepAlive: 30 * time.Second}).DialContext,
		// Every reader of a pass plus the token PUT keeps its
		// connection: a pass opens about this many, once.
		MaxIdleConns:          o.Concurrency + 1,
		MaxIdleConnsPerHost:   o.Concurrency + 1,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: o.RequestTimeout,
		DisableCompression:    true,
	}}
}

// Endpoint returns the endpoint the client talks to.
func (c *Client) Endpoint() string { return c.endpoint }
