package metrics

import (
	"bytes"
	"io"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ec2net/ec2net/agent/config"
	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parse(t *testing.T, b []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the text format does not parse: %v\n%s", err, b)
	}
	return mfs
}

// value returns the value of the series of family name whose labels
// include every pair given.
func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	mf, ok := mfs[name]
	if !ok {
		t.Fatalf("no %s", name)
	}
	for _, m := range mf.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no %s%v", name, labels)
	return 0
}

func TestFileParsesAndCountersMove(t *testing.T) {
	stats := imds.Stats{Requests: 3, OK: 2, NotFound: 1}
	m := New("1.2.3", time.Unix(1000, 0), func() imds.Stats { return stats })
	path := filepath.Join(t.TempDir(), "netns-1.prom")
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	mfs := parse(t, b)
	if v := value(t, mfs, "ec2net_enis", "state", "shadowed"); v != 0 {
		t.Errorf("shadowed ENIs before any status: %v", v)
	}
	if v := value(t, mfs, "ec2net_build_info", "version", "1.2.3"); v != 1 {
		t.Errorf("build info %v", v)
	}
	if v := value(t, mfs, "ec2net_imds_requests_total", "outcome", "not_found"); v != 1 {
		t.Errorf("IMDS 404s %v", v)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("file mode %v: node_exporter does not run as root", fi.Mode())
	}

	m.Reconciled("imds", false, time.Unix(2000, 0))
	m.Reconciled("repair", true, time.Unix(2001, 0))
	m.Repaired("rule", 3)
	m.Read(true, time.Unix(1999, 0))
	m.Read(false, time.Unix(2002, 0))
	m.ObserveIMDS(3 * time.Millisecond)
	stats.OK = 10
	m.SetStatus([]netconf.ENIStatus{
		{State: netconf.StateConfigured, LinkAddrs: []netip.Addr{netip.MustParseAddr("100.64.2.10")},
			Addrs: []netconf.AddrStatus{{Address: netip.MustParseAddr("100.64.2.10"), State: netconf.StateConfigured}}},
		{State: netconf.StateShadowed, LinkAddrs: []netip.Addr{netip.MustParseAddr("100.64.3.10")},
			Addrs: []netconf.AddrStatus{{Address: netip.MustParseAddr("100.64.3.10"), State: netconf.StateShadowed},
				{Address: netip.MustParseAddr("100.64.3.11"), State: netconf.StateDrift}}},
	}, time.Unix(2003, 0))
	if err := m.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	mfs = parse(t, b)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"ec2net_reconciles_total", []string{"trigger", "imds"}, 1},
		{"ec2net_reconciles_total", []string{"trigger", "repair"}, 1},
		{"ec2net_reconcile_failures_total", []string{"trigger", "repair"}, 1},
		{"ec2net_reconcile_failures_total", []string{"trigger", "imds"}, 0},
		{"ec2net_repairs_total", []string{"kind", "rule"}, 3},
		{"ec2net_repairs_total", []string{"kind", "addr"}, 0},
		{"ec2net_imds_reads_total", []string{"outcome", "error"}, 1},
		{"ec2net_imds_last_success_timestamp_seconds", nil, 1999},
		{"ec2net_imds_request_duration_seconds", nil, 1},
		{"ec2net_imds_requests_total", []string{"outcome", "ok"}, 10},
		{"ec2net_enis", []string{"state", "shadowed"}, 1},
		{"ec2net_enis", []string{"state", "configured"}, 1},
		{"ec2net_addresses", []string{"kind", "wanted"}, 3},
		{"ec2net_addresses", []string{"kind", "present"}, 2},
		{"ec2net_addresses", []string{"kind", "verified"}, 1},
		{"ec2net_start_time_seconds", nil, 1000},
	} {
		if v := value(t, mfs, c.name, c.labels...); v != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, v, c.want)
		}
	}
	// Nothing but the file itself in its directory: no temporary left.
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("directory holds %d entries", len(ents))
	}
}

func TestListenOnlyOnLoopback(t *testing.T) {
	for _, bad := range []string{"0.0.0.0:9464", ":9464", "100.64.1.10:9464", "[::]:9464", "127.0.0.1", "localhost:x"} {
		if config.LoopbackHostPort(bad) == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, good := range []string{"127.0.0.1:9464", "[::1]:9464", "localhost:9464", "127.0.0.1:0"} {
		if err := config.LoopbackHostPort(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

func TestServeMetrics(t *testing.T) {
	m := New("test", time.Now(), nil)
	m.Repaired("addr", 2)
	stop, addr, err := m.serve("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v := value(t, parse(t, b), "ec2net_repairs_total", "kind", "addr"); v != 2 || !strings.Contains(string(b), "ec2net_build_info") {
		t.Errorf("served repairs %v:\n%s", v, b)
	}
}

// The families as Prometheus reads them back: histogram buckets are
// cumulative with inclusive upper bounds, and label values and help
// texts with quotes, backslashes and newlines come back as they were.
func TestTextFormatEdgesParse(t *testing.T) {
	version := "v1 \"quoted\" back\\slash\nnewline"
	m := New(version, time.Unix(1, 0), nil)
	for _, d := range []time.Duration{500 * time.Microsecond, 3 * time.Millisecond, 10 * time.Second} {
		m.ObserveIMDS(d)
	}
	b, err := m.Text()
	if err != nil {
		t.Fatal(err)
	}
	mfs := parse(t, b)
	if v := value(t, mfs, "ec2net_build_info", "version", version); v != 1 {
		t.Errorf("build info with an awkward version: %v\n%s", v, b)
	}
	h := mfs["ec2net_imds_request_duration_seconds"].GetMetric()[0].GetHistogram()
	want := map[float64]uint64{0.0005: 1, 0.001: 1, 0.0025: 1, 0.005: 2, 2.5: 2}
	for _, bk := range h.GetBucket() {
		if w, ok := want[bk.GetUpperBound()]; ok && bk.GetCumulativeCount() != w {
			t.Errorf("bucket le=%v holds %d, want %d", bk.GetUpperBound(), bk.GetCumulativeCount(), w)
		}
	}
	if h.GetSampleCount() != 3 || h.GetSampleSum() < 10.0035 || h.GetSampleSum() > 10.0036 {
		t.Errorf("count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	if _, ok := mfs["ec2net_imds_requests_total"]; ok {
		t.Errorf("IMDS request counts exported without a source of them")
	}
}
