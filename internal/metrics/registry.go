package metrics

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Kind is a metric type.
type Kind string

// Metric types.
const (
	Counter   Kind = "counter"
	Gauge     Kind = "gauge"
	Histogram Kind = "histogram"
)

// Family is one metric name with its label names and series.
type Family struct {
	name    string
	help    string
	kind    Kind
	labels  []string
	buckets []float64

	mu     sync.Mutex
	series map[string]*series
}

type series struct {
	values []string
	value  float64
	counts []uint64 // histogram buckets
	sum    float64
	count  uint64
}

// Registry holds families and renders them.
type Registry struct {
	mu       sync.Mutex
	families []*Family
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

func (r *Registry) add(f *Family) *Family {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.families = append(r.families, f)
	return f
}

// NewCounter registers a counter family.
func (r *Registry) NewCounter(name, help string, labels ...string) *Family {
	return r.add(&Family{name: name, help: help, kind: Counter, labels: labels, series: map[string]*series{}})
}

// NewGauge registers a gauge family.
func (r *Registry) NewGauge(name, help string, labels ...string) *Family {
	return r.add(&Family{name: name, help: help, kind: Gauge, labels: labels, series: map[string]*series{}})
}

// NewHistogram registers a histogram family.
func (r *Registry) NewHistogram(name, help string, buckets []float64, labels ...string) *Family {
	return r.add(&Family{name: name, help: help, kind: Histogram, labels: labels, buckets: buckets, series: map[string]*series{}})
}

func key(values []string) string { return strings.Join(values, "\xff") }

func (f *Family) get(values []string) *series {
	if len(values) != len(f.labels) {
		panic(fmt.Sprintf("metric %s: %d label values for %d labels", f.name, len(values), len(f.labels)))
	}
	k := key(values)
	s, ok := f.series[k]
	if !ok {
		s = &series{values: append([]string{}, values...)}
		if f.kind == Histogram {
			s.counts = make([]uint64, len(f.buckets))
		}
		f.series[k] = s
	}
	return s
}

// Add adds v to a counter or gauge series.
func (f *Family) Add(v float64, labelValues ...string) {
	f.mu.Lock()
	f.get(labelValues).value += v
	f.mu.Unlock()
}

// Inc adds 1.
func (f *Family) Inc(labelValues ...string) { f.Add(1, labelValues...) }

// Set sets a gauge series.
func (f *Family) Set(v float64, labelValues ...string) {
	f.mu.Lock()
	f.get(labelValues).value = v
	f.mu.Unlock()
}

// Observe records a histogram sample.
func (f *Family) Observe(v float64, labelValues ...string) {
	f.mu.Lock()
	s := f.get(labelValues)
	for i, b := range f.buckets {
		if v <= b {
			s.counts[i]++
		}
	}
	s.sum += v
	s.count++
	f.mu.Unlock()
}

// DeleteMatching removes every series whose label `label` equals value
// (series of a gone kernel).
func (f *Family) DeleteMatching(label, value string) int {
	return f.DeleteWhere(map[string]string{label: value})
}

// DeleteWhere removes every series whose labels have all the given
// values (a gone device of one metric: name and device id).
func (f *Family) DeleteWhere(match map[string]string) int {
	idx := map[int]string{}
	for i, l := range f.labels {
		if v, ok := match[l]; ok {
			idx[i] = v
		}
	}
	if len(idx) != len(match) {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for k, s := range f.series {
		hit := true
		for i, v := range idx {
			if s.values[i] != v {
				hit = false
				break
			}
		}
		if hit {
			delete(f.series, k)
			n++
		}
	}
	return n
}

// Len returns the number of series.
func (f *Family) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.series)
}

func escapeLabel(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, "\n", `\n`)
	return strings.ReplaceAll(s, `"`, `\"`)
}

func fmtFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func (f *Family) labelString(values []string, extra ...string) string {
	if len(values) == 0 && len(extra) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for i, l := range f.labels {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(l + `="` + escapeLabel(values[i]) + `"`)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(extra[i] + `="` + escapeLabel(extra[i+1]) + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

// WriteText renders the Prometheus text format (0.0.4).
func (r *Registry) WriteText(w io.Writer) error {
	r.mu.Lock()
	fams := append([]*Family{}, r.families...)
	r.mu.Unlock()
	sort.Slice(fams, func(i, j int) bool { return fams[i].name < fams[j].name })
	var buf bytes.Buffer
	for _, f := range fams {
		f.mu.Lock()
		keys := make([]string, 0, len(f.series))
		for k := range f.series {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		name := f.name
		if f.kind == Counter && !strings.HasSuffix(name, "_total") {
			// Counters are exposed with _total, as Prometheus clients
			// write them.
			name += "_total"
		}
		fmt.Fprintf(&buf, "# HELP %s %s\n# TYPE %s %s\n", name, f.help, name, f.kind)
		for _, k := range keys {
			s := f.series[k]
			switch f.kind {
			case Histogram:
				for i, b := range f.buckets {
					fmt.Fprintf(&buf, "%s_bucket%s %d\n", name, f.labelString(s.values, "le", fmtFloat(b)), s.counts[i])
				}
				fmt.Fprintf(&buf, "%s_bucket%s %d\n", name, f.labelString(s.values, "le", "+Inf"), s.count)
				fmt.Fprintf(&buf, "%s_sum%s %s\n", name, f.labelString(s.values), fmtFloat(s.sum))
				fmt.Fprintf(&buf, "%s_count%s %d\n", name, f.labelString(s.values), s.count)
			default:
				fmt.Fprintf(&buf, "%s%s %s\n", name, f.labelString(s.values), fmtFloat(s.value))
			}
		}
		f.mu.Unlock()
	}
	_, err := w.Write(buf.Bytes())
	return err
}
