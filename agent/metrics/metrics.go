// Package metrics is what `ec2net run` tells Prometheus: a text-format
// file the node_exporter textfile collector reads (written atomically, so
// a scrape never sees half of it), and optionally a /metrics listener on
// localhost. The registry and the text encoding are the Prometheus client
// library's; nothing here writes the format by hand.
package metrics

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ec2net/ec2net/agent/imds"
	"github.com/ec2net/ec2net/netconf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// Metrics holds every series ec2net exports.
type Metrics struct {
	reg *prometheus.Registry

	enis      *prometheus.GaugeVec   // ec2net_enis{state}
	addrs     *prometheus.GaugeVec   // ec2net_addresses{kind}
	reconcile *prometheus.CounterVec // ec2net_reconciles_total{trigger}
	failures  *prometheus.CounterVec // ec2net_reconcile_failures_total{trigger}
	repairs   *prometheus.CounterVec // ec2net_repairs_total{kind}
	reads     *prometheus.CounterVec // ec2net_imds_reads_total{outcome}
	latency   prometheus.Histogram   // ec2net_imds_request_duration_seconds
	lastRead  prometheus.Gauge       // ec2net_imds_last_success_timestamp_seconds
	lastPass  prometheus.Gauge       // ec2net_last_reconcile_timestamp_seconds
	verified  prometheus.Gauge       // ec2net_last_verification_timestamp_seconds
}

// States lists every ENI state, so that ec2net_enis has a series (0 when
// none) for each and an alert on "shadowed > 0" never sees an absent
// series.
var States = []netconf.State{
	netconf.StateConfigured, netconf.StateDrift, netconf.StatePending, netconf.StateInvalid, netconf.StateUnknown,
	netconf.StateExcluded, netconf.StateAbsent, netconf.StateUnlisted, netconf.StateEFAOnly,
	netconf.StateShadowed, netconf.StateWrongPath, netconf.StateDown, netconf.StateRPFilter,
}

// New makes the registry. imdsStats, when not nil, is read at every
// export for ec2net_imds_requests_total{outcome}.
func New(version string, started time.Time, imdsStats func() imds.Stats) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.enis = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ec2net_enis",
		Help: "ENIs by state, as `ec2net status` reports them (path-verified)."}, []string{"state"})
	m.addrs = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ec2net_addresses",
		Help: "Addresses of the ENIs ec2net configures: wanted (IMDS), present (on the link), verified (the route lookup takes its ENI)."},
		[]string{"kind"})
	m.reconcile = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ec2net_reconciles_total",
		Help: "Reconcile passes, by what caused them (imds, link change, repair, events lost)."}, []string{"trigger"})
	m.failures = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ec2net_reconcile_failures_total",
		Help: "Reconcile passes that failed, or in which a change failed, by trigger."}, []string{"trigger"})
	m.repairs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ec2net_repairs_total",
		Help: "Objects ec2net restored after another program deleted them, by kind (addr, route, rule, link)."}, []string{"kind"})
	m.reads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "ec2net_imds_reads_total",
		Help: "IMDS reads (a snapshot of every ENI or of some), by outcome (ok, error)."}, []string{"outcome"})
	m.latency = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "ec2net_imds_request_duration_seconds",
		Help:    "Time from sending an IMDS HTTP request to its response headers (token PUTs included).",
		Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}})
	m.lastRead = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ec2net_imds_last_success_timestamp_seconds",
		Help: "When IMDS was last read successfully (Unix time; 0: never)."})
	m.lastPass = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ec2net_last_reconcile_timestamp_seconds",
		Help: "When the last reconcile pass completed (Unix time; 0: never)."})
	m.verified = prometheus.NewGauge(prometheus.GaugeOpts{Name: "ec2net_last_verification_timestamp_seconds",
		Help: "When the paths of every address were last verified (Unix time; 0: never)."})
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "ec2net_build_info",
		Help: "ec2net's version and Go version (always 1)."}, []string{"version", "goversion"})
	info.WithLabelValues(version, runtime.Version()).Set(1)
	start := prometheus.NewGauge(prometheus.GaugeOpts{Name: "ec2net_start_time_seconds",
		Help: "When the daemon started (Unix time)."})
	start.Set(float64(started.Unix()))
	m.reg.MustRegister(m.enis, m.addrs, m.reconcile, m.failures, m.repairs, m.reads, m.latency, m.lastRead,
		m.lastPass, m.verified, info, start)
	if imdsStats != nil {
		m.reg.MustRegister(&requestCollector{stats: imdsStats})
	}
	for _, s := range States {
		m.enis.WithLabelValues(s.String()).Set(0)
	}
	for _, k := range []string{"wanted", "present", "verified"} {
		m.addrs.WithLabelValues(k).Set(0)
	}
	for _, o := range []string{"ok", "error"} {
		m.reads.WithLabelValues(o)
	}
	for _, k := range []string{"addr", "route", "rule", "link"} {
		m.repairs.WithLabelValues(k)
	}
	return m
}

// Registry is the registry, for a listener or a test.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Reconciled counts a pass; failed: it failed or a change in it did.
func (m *Metrics) Reconciled(trigger string, failed bool, at time.Time) {
	m.reconcile.WithLabelValues(trigger).Inc()
	if failed {
		m.failures.WithLabelValues(trigger).Inc()
	} else {
		m.failures.WithLabelValues(trigger) // the series exists, at 0
	}
	m.lastPass.Set(float64(at.Unix()))
}

// Repaired counts objects restored, by kind.
func (m *Metrics) Repaired(kind string, n int) { m.repairs.WithLabelValues(kind).Add(float64(n)) }

// Read counts an IMDS read.
func (m *Metrics) Read(ok bool, at time.Time) {
	if !ok {
		m.reads.WithLabelValues("error").Inc()
		return
	}
	m.reads.WithLabelValues("ok").Inc()
	m.lastRead.Set(float64(at.Unix()))
}

// ObserveIMDS records one IMDS request's latency.
func (m *Metrics) ObserveIMDS(d time.Duration) { m.latency.Observe(d.Seconds()) }

// SetStatus sets the ENI and address gauges from a path-verified status.
func (m *Metrics) SetStatus(rows []netconf.ENIStatus, at time.Time) {
	counts := map[string]int{}
	var wanted, present, verified int
	for _, r := range rows {
		counts[r.State.String()]++
		on := map[netip.Addr]bool{}
		for _, a := range r.LinkAddrs {
			on[a] = true
		}
		for _, a := range r.Addrs {
			wanted++
			if on[a.Address] {
				present++
			}
			if a.State == netconf.StateConfigured {
				verified++
			}
		}
	}
	for _, s := range States {
		m.enis.WithLabelValues(s.String()).Set(float64(counts[s.String()]))
	}
	m.addrs.WithLabelValues("wanted").Set(float64(wanted))
	m.addrs.WithLabelValues("present").Set(float64(present))
	m.addrs.WithLabelValues("verified").Set(float64(verified))
	m.verified.Set(float64(at.Unix()))
}

// Text encodes every metric in the Prometheus text format.
func (m *Metrics) Text() ([]byte, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// WriteFile writes the text format to path atomically (a temporary file
// in the same directory, renamed over it), readable by everyone: the
// node_exporter textfile collector does not run as root.
func (m *Metrics) WriteFile(path string) error {
	b, err := m.Text()
	if err != nil {
		return err
	}
	return writeAtomic(path, b, 0o644)
}

func writeAtomic(path string, b []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // after a successful rename, nothing to remove
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}

// requestCollector exports imds.Stats as ec2net_imds_requests_total.
type requestCollector struct{ stats func() imds.Stats }

var requestsDesc = prometheus.NewDesc("ec2net_imds_requests_total",
	"HTTP requests to IMDS (token PUTs included), by outcome.", []string{"outcome"}, nil)

func (c *requestCollector) Describe(ch chan<- *prometheus.Desc) { ch <- requestsDesc }

func (c *requestCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats()
	for _, o := range []struct {
		name string
		n    int64
	}{{"ok", s.OK}, {"not_found", s.NotFound}, {"unauthorized", s.Unauthorized}, {"forbidden", s.Forbidden},
		{"throttled", s.Throttled}, {"server_error", s.ServerError}, {"other_status", s.OtherStatus},
		{"network_error", s.NetworkError}} {
		ch <- prometheus.MustNewConstMetric(requestsDesc, prometheus.CounterValue, float64(o.n), o.name)
	}
}
