package metrics

import (
	"math"
	"slices"
	"strconv"
	"strings"
)

// The Prometheus text exposition format (0.0.4), written by hand for the
// dozen families ec2net exports: counters and gauges with at most a
// couple of labels, and one histogram. The client library did the same
// job at the cost of ~6 ms in the start of every ec2net process (its
// package initialisation, protobuf's included: measured against the same
// binary without it), which `ec2net apply` at boot pays for metrics it
// never writes. The tests read what is written here with Prometheus's
// own parser.

// vec is one counter or gauge family: a value per label combination.
type vec struct {
	name, help, typ string   // typ: "counter" or "gauge"
	labels          []string // label names
	series          map[string]float64
}

func newVec(typ, name, help string, labels ...string) *vec {
	return &vec{name: name, help: help, typ: typ, labels: labels, series: map[string]float64{}}
}

// key renders label values as the series' label set: {a="x",b="y"}.
func (v *vec) key(values []string) string {
	if len(v.labels) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, name := range v.labels {
		if i > 0 {
			b.WriteByte(',')
		}
		val := ""
		if i < len(values) {
			val = values[i]
		}
		b.WriteString(name)
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(val))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// touch makes the series exist (at 0 until set or added to): an alert
// on a series must not see it absent.
func (v *vec) touch(values ...string) {
	k := v.key(values)
	if _, ok := v.series[k]; !ok {
		v.series[k] = 0
	}
}

func (v *vec) set(x float64, values ...string) { v.series[v.key(values)] = x }
func (v *vec) add(x float64, values ...string) { v.series[v.key(values)] += x }

func (v *vec) write(b *strings.Builder) {
	header(b, v.name, v.help, v.typ)
	keys := make([]string, 0, len(v.series))
	for k := range v.series {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		sample(b, v.name, k, v.series[k])
	}
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

func (h *histogram) write(b *strings.Builder) {
	header(b, h.name, h.help, "histogram")
	var cum uint64
	for i, c := range h.counts {
		cum += c
		le := "+Inf"
		if i < len(h.bounds) {
			le = formatFloat(h.bounds[i])
		}
		sample(b, h.name+"_bucket", `{le="`+le+`"}`, float64(cum))
	}
	sample(b, h.name+"_sum", "", h.sum)
	sample(b, h.name+"_count", "", float64(h.count))
}

func header(b *strings.Builder, name, help, typ string) {
	b.WriteString("# HELP ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(helpEscaper.Replace(help))
	b.WriteString("\n# TYPE ")
	b.WriteString(name)
	b.WriteByte(' ')
	b.WriteString(typ)
	b.WriteByte('\n')
}

func sample(b *strings.Builder, name, labels string, x float64) {
	b.WriteString(name)
	b.WriteString(labels)
	b.WriteByte(' ')
	b.WriteString(formatFloat(x))
	b.WriteByte('\n')
}

func formatFloat(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "+Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	case math.IsNaN(x):
		return "NaN"
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

// The format's escapes: in HELP, backslash and newline; in label
// values, also the double quote.
var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)
