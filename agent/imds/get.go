package imds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	sdkimds "github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"
)

// outcome is what one read (all its attempts) came to.
type outcome int

const (
	outValue    outcome = iota // 200 with a body that parsed
	outAbsent                  // 404: authoritatively not there
	outUnknown                 // no usable answer: status, network, empty body
	outInvalid                 // IMDS answered, consistently, with something that does not validate
	outDisabled                // 403 (twice, with two tokens)
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
// in some errors (a 401 is wrapped in an error type without Unwrap), the
// wrapper rewrites token rejections to 401 (see countingDoer), and a
// token PUT failure is reported as a GET failure; the record keeps all.
type attemptRecord struct {
	getStatus    atomic.Int32 // last GET status as IMDS sent it, 0 if none
	putStatus    atomic.Int32 // last token PUT status, 0 if none
	gotResponse  atomic.Bool  // any HTTP response (GET or PUT)
	bodyTooBig   atomic.Bool
	tokenRefused atomic.Value // string: why a 200 token was not accepted
}

type recordKey struct{}

func recordFrom(ctx context.Context) *attemptRecord {
	r, _ := ctx.Value(recordKey{}).(*attemptRecord)
	return r
}

// get reads one metadata path with ec2net's retry loop (Options.Attempts).
func (c *Client) get(ctx context.Context, path string, parse func(string) error) readResult {
	return c.getN(ctx, path, c.opts.Attempts, parse)
}

// getN reads path with up to attempts attempts. parse validates the body
// (and stores what it parsed); errEmpty from parse, and any failure to get
// a 200, count as unknown and are retried; other parse errors are retried
// too (a dropped packet can corrupt an answer) and, if every attempt's
// answer fails to parse, make the read invalid.
func (c *Client) getN(ctx context.Context, path string, attempts int, parse func(string) error) readResult {
	parent := ctx
	ctx, done := c.firstContact(ctx, path)
	defer done()
	bo := NewBackoff(c.opts.Backoff)
	res := readResult{out: outUnknown, unreachable: true, reason: path + ": not read"}
	// One token rejection (401, 400, 431) retry is free and immediate:
	// token expiry is routine. A 403 may be about the token too: one
	// retry with a fresh one before concluding that IMDS is disabled.
	free := map[int]bool{http.StatusUnauthorized: true, http.StatusForbidden: true}
	wait := false
	for attempt := 1; attempt <= attempts; attempt++ {
		if wait && !sleepCtx(ctx, bo.Next()) || ctx.Err() != nil {
			res.out, res.reason = outUnknown, c.ctxReason(ctx, parent, path)
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
		r, next := c.judge(path, body, err, rec, parse, free)
		c.debug(path, attempt, start, r.reason)
		switch next {
		case stepDone:
			return r
		case stepNow:
			attempt--
		}
		res.out, res.reason, wait = r.out, r.reason, next == stepLater
	}
	return res
}

// step is what getN does after an attempt.
type step int

const (
	stepLater step = iota // retry after a backoff delay
	stepNow               // retry at once (a fresh token), not counted as an attempt
	stepDone              // the read is over
)

// judge classifies one attempt. free holds the statuses whose one
// immediate retry is still unused (see getN).
func (c *Client) judge(path, body string, err error, rec *attemptRecord, parse func(string) error, free map[int]bool) (readResult, step) {
	putStatus := int(rec.putStatus.Load())
	tokenFailed := putStatus != 0 && putStatus != http.StatusOK
	status := statusOf(err, rec)
	refused, _ := rec.tokenRefused.Load().(string)
	switch {
	case err == nil && rec.bodyTooBig.Load():
		c.stats.garbage.Add(1)
		// Deterministic: retrying would only cost requests.
		return readResult{out: outInvalid, reason: fmt.Sprintf("%s: body over %d bytes", path, MaxBodyBytes)}, stepDone
	case err == nil:
		perr := parse(body)
		if perr == nil {
			return readResult{out: outValue, reason: "ok"}, stepDone
		}
		c.stats.garbage.Add(1)
		if errors.Is(perr, errEmpty) {
			return readResult{out: outUnknown, reason: path + ": empty answer"}, stepLater
		}
		return readResult{out: outInvalid, reason: path + ": " + perr.Error()}, stepLater
	case tokenFailed && putStatus == http.StatusForbidden:
		return readResult{out: outDisabled, reason: path + ": token PUT answered 403 (IMDS disabled)"}, stepDone
	case refused != "":
		// Never cached; the next attempt PUTs again.
		return readResult{out: outUnknown, reason: path + ": " + refused}, stepLater
	case tokenFailed:
		return readResult{out: outUnknown, reason: fmt.Sprintf("%s: token PUT answered %d", path, putStatus)}, stepLater
	case status == http.StatusNotFound:
		return readResult{out: outAbsent, reason: "404"}, stepDone
	case status == http.StatusForbidden && !free[status]:
		return readResult{out: outDisabled, reason: path + ": 403 with two different tokens (IMDS disabled)"}, stepDone
	case status == http.StatusForbidden, tokenRejected(status):
		// The wrapper made the SDK drop its token; the next attempt
		// PUTs a new one.
		r := readResult{out: outUnknown, reason: fmt.Sprintf("%s: %d (token rejected)", path, status)}
		key := status
		if key != http.StatusForbidden {
			key = http.StatusUnauthorized
		}
		if free[key] {
			free[key] = false
			return r, stepNow
		}
		return r, stepLater
	}
	if status == http.StatusOK {
		status = 0 // the body broke off after a 200: the error says how
	}
	return readResult{out: outUnknown, reason: path + ": " + describe(err, status)}, stepLater
}

// tokenRejected: GET statuses that mean "this token is no good": 401
// (expired, IMDS restarted), 400 and 431 (a token IMDS cannot take). 403
// is handled apart: it also means "IMDS disabled".
func tokenRejected(status int) bool {
	switch status {
	case http.StatusUnauthorized, http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge:
		return true
	}
	return false
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// firstContact bounds ctx by Options.FirstContact until IMDS has ever
// answered this client, and logs once, at info, what it is waiting for
// when no answer has come after 40 % of that bound.
func (c *Client) firstContact(ctx context.Context, path string) (context.Context, func()) {
	fc := c.opts.FirstContact
	if fc < 0 || c.answered.Load() {
		return ctx, func() {}
	}
	ctx, cancel := context.WithTimeoutCause(ctx, fc, errFirstContact)
	note := time.AfterFunc(fc*2/5, func() {
		if c.answered.Load() {
			return
		}
		c.waitNoted.Do(func() {
			c.log.Info("no answer yet from IMDS at "+c.endpoint,
				zap.String("waiting_for", path), zap.Duration("gives_up_after", fc))
		})
	})
	return ctx, func() { note.Stop(); cancel() }
}

var errFirstContact = errors.New("first contact")

// ctxReason says why a read stopped on its context: the first-contact
// bound, the pass deadline, or the caller.
func (c *Client) ctxReason(ctx, parent context.Context, path string) string {
	if parent.Err() == nil && errors.Is(context.Cause(ctx), errFirstContact) {
		return fmt.Sprintf("%s: no answer from IMDS at %s within %v", path, c.endpoint, c.opts.FirstContact)
	}
	return path + ": " + context.Cause(ctx).Error()
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

// statusOf finds the HTTP status of a failed GET: what IMDS sent, as the
// wire wrapper saw it (the SDK's error may carry a rewritten 401, or hide
// the status), else from the error.
func statusOf(err error, rec *attemptRecord) int {
	if err == nil {
		return 0
	}
	if s := rec.getStatus.Load(); s != 0 {
		return int(s)
	}
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
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
