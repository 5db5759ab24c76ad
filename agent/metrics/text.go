package metrics

import (
	"bytes"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"
)

// The series are kept here as plain values and handed to the Prometheus
// text encoder (prometheus/common/expfmt, the format support the client
// library itself uses) as metric families: the format, its escaping and
// its number syntax stay the library's. The client library's registry is
// not used: for a dozen families it added ~4 ms to the start of every
// ec2net process (its package initialisation, measured against the same
// binary without it), which `ec2net apply` at boot paid for metrics it
// never writes.

// vec is one counter or gauge family: a value per label combination.
type vec struct {
	name, help string
	typ        dto.MetricType
	labels     []string           // label names
	series     map[string]float64 // by labelKey(values)
}

func newVec(typ dto.MetricType, name, help string, labels ...string) *vec {
	return &vec{name: name, help: help, typ: typ, labels: labels, series: map[string]float64{}}
}

// labelKey joins label values with a byte no value holds.
func labelKey(values []string) string { return strings.Join(values, "\x00") }

// touch makes the series exist (at 0 until set or added to): an alert
// on a series must not see it absent.
func (v *vec) touch(values ...string) {
	k := labelKey(values)
	if _, ok := v.series[k]; !ok {
		v.series[k] = 0
	}
}

func (v *vec) set(x float64, values ...string) { v.series[labelKey(values)] = x }
func (v *vec) add(x float64, values ...string) { v.series[labelKey(values)] += x }

func (v *vec) family() *dto.MetricFamily {
	mf := &dto.MetricFamily{Name: proto.String(v.name), Help: proto.String(v.help), Type: v.typ.Enum()}
	keys := make([]string, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m := &dto.Metric{}
		if len(v.labels) > 0 {
			for i, val := range strings.Split(k, "\x00") {
				m.Label = append(m.Label, &dto.LabelPair{Name: proto.String(v.labels[i]), Value: proto.String(val)})
			}
		}
		if v.typ == dto.MetricType_COUNTER {
			m.Counter = &dto.Counter{Value: proto.Float64(v.series[k])}
		} else {
			m.Gauge = &dto.Gauge{Value: proto.Float64(v.series[k])}
		}
		mf.Metric = append(mf.Metric, m)
	}
	return mf
}

// histogram is one label-less histogram.
type histogram struct {
	name, help string
	bounds     []float64 // upper bounds, increasing; +Inf is implied
	counts     []uint64  // per bucket (not cumulative); last is +Inf
	sum        float64
	count      uint64
}

func newHistogram(name, help string, bounds []float64) *histogram {
	return &histogram{name: name, help: help, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(x float64) {
	i, _ := slices.BinarySearch(h.bounds, x) // first bound ≥ x: le is inclusive
	h.counts[i]++
	h.sum += x
	h.count++
}

func (h *histogram) family() *dto.MetricFamily {
	d := &dto.Histogram{SampleCount: proto.Uint64(h.count), SampleSum: proto.Float64(h.sum)}
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		d.Bucket = append(d.Bucket, &dto.Bucket{UpperBound: proto.Float64(b), CumulativeCount: proto.Uint64(cum)})
	}
	return &dto.MetricFamily{Name: proto.String(h.name), Help: proto.String(h.help),
		Type: dto.MetricType_HISTOGRAM.Enum(), Metric: []*dto.Metric{{Histogram: d}}}
}

// encode writes families, in name order, in the text format.
func encode(fams []*dto.MetricFamily) ([]byte, error) {
	slices.SortFunc(fams, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	var b bytes.Buffer
	enc := expfmt.NewEncoder(&b, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range fams {
		if err := enc.Encode(mf); err != nil {
			return nil, err
		}
	}
	return b.Bytes(), nil
}

// contentType is the text format's, for the /metrics listener.
var contentType = string(expfmt.NewFormat(expfmt.TypeTextPlain))
