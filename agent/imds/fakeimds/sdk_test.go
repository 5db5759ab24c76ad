package fakeimds

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// sdkClient is the real SDK client with IMDSv1 fallback off, on its own
// transport so that its connections are closed when the test ends.
func sdkClient(t *testing.T, endpoint string) *imds.Client {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	// No backoff between retries: the retry after a 401 is immediate, so
	// the test stays fast.
	retryer := retry.NewStandard(func(o *retry.StandardOptions) {
		o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return 0, nil })
	})
	return imds.New(imds.Options{
		Endpoint:       endpoint,
		EnableFallback: aws.FalseTernary,
		HTTPClient:     &http.Client{Transport: tr, Timeout: 10 * time.Second},
		Retryer:        retryer,
		// Otherwise the client wraps the retryer with its own jittered
		// backoff (up to 1 s) and ours is ignored.
		DisableDefaultMaxBackoff: true,
	})
}

func sdkGet(t *testing.T, c *imds.Client, path string) string {
	t.Helper()
	out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		t.Fatalf("GetMetadata(%s): %v", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSDKClientReadsMACListingOfRealTree(t *testing.T) {
	// The embedded copy must match the shared reference when it is there
	// (beside the repository, as in CI and on the dev machine).
	path := filepath.Join("testdata", "real01.json")
	if ref, err := filepath.Abs(filepath.Join("..", "..", "..", "..", "shared", "reference", "imds-trees", "real01.json")); err == nil {
		if _, err := LoadTree(ref); err == nil {
			path = ref
		}
	}
	s, err := LoadTree(path)
	if err != nil {
		t.Fatal(err)
	}
	c := sdkClient(t, start(t, s))
	if got, want := sdkGet(t, c, "network/interfaces/macs/"), "06:17:04:d7:26:08/\n06:17:04:d7:26:09/"; got != want {
		t.Fatalf("macs/ = %q, want %q", got, want)
	}
	if got := sdkGet(t, c, "network/interfaces/macs/06:17:04:d7:26:08/device-number"); got != "1" {
		t.Fatalf("device-number = %q", got)
	}
	region, err := c.GetRegion(context.Background(), &imds.GetRegionInput{})
	if err != nil || region.Region != "us-east-2" {
		t.Fatalf("GetRegion: %+v %v", region, err)
	}
	if n := s.Requests("PUT /latest/api/token"); n != 1 {
		t.Fatalf("SDK PUT %d tokens, want 1 (cached)", n)
	}
}

func TestSDKClientRecoversAfterExpireTokens(t *testing.T) {
	s, _ := instance(t)
	// instance started one listener; a second one serves the SDK client.
	ep, err := s.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := sdkClient(t, ep)
	sdkGet(t, c, "mac")
	s.ExpireTokens()
	// The SDK clears its token on 401 and retries with a new one.
	if got := sdkGet(t, c, "mac"); got != primary().MAC {
		t.Fatalf("mac = %q", got)
	}
	if n := s.Requests("PUT /latest/api/token"); n != 3 { // instance's login + 2 SDK
		t.Fatalf("token PUTs %d, want 3", n)
	}
}
