package stats

import (
	"time"

	"github.com/shopspring/decimal"
)

// Def describes one metric.
type Def struct {
	Key  string
	Unit string // unit_hint: percent, msec, bytes, bps
	// Filter lists the stats.* keys serialized (min, max, sum, avg, diff,
	// rate).
	Filter []string
	// Current is how the reported current value derives from the samples.
	Current CurrentKind
}

// CurrentKind picks the reported current value.
type CurrentKind int

// Current value sources.
const (
	CurrentLast CurrentKind = iota // the last sample (gauges, accumulations)
	CurrentRate                    // the per-second rate of the last two samples
	CurrentDiff                    // the difference of the last two samples
)

type sample struct {
	v decimal.Decimal
	t time.Time
}

// Moving is MovingStatistics: min, max, sum, avg over all samples, and
// diff/rate over the last two (a negative diff is a counter reset,
// reported as 0).
type Moving struct {
	last, prev *sample
	min, max   decimal.Decimal
	sum        decimal.Decimal
	n          int64
}

// Update adds a sample.
func (m *Moving) Update(v decimal.Decimal, t time.Time) {
	if m.n == 0 || v.LessThan(m.min) {
		m.min = v
	}
	if m.n == 0 || v.GreaterThan(m.max) {
		m.max = v
	}
	m.sum = m.sum.Add(v)
	m.n++
	m.prev = m.last
	m.last = &sample{v: v, t: t}
}

// Last returns the last sample (0 if none).
func (m *Moving) Last() decimal.Decimal {
	if m.last == nil {
		return decimal.Zero
	}
	return m.last.v
}

// Diff is last - previous, clamped at 0.
func (m *Moving) Diff() decimal.Decimal {
	if m.last == nil || m.prev == nil {
		return decimal.Zero
	}
	d := m.last.v.Sub(m.prev.v)
	if d.IsNegative() {
		return decimal.Zero
	}
	return d
}

// Rate is Diff per wall-clock second.
func (m *Moving) Rate() decimal.Decimal {
	if m.last == nil || m.prev == nil {
		return decimal.Zero
	}
	secs := m.last.t.Sub(m.prev.t).Seconds()
	if secs <= 0 {
		return decimal.Zero
	}
	return m.Diff().Div(decimal.NewFromFloat(secs))
}

// Avg is the mean of all samples.
func (m *Moving) Avg() decimal.Decimal {
	if m.n == 0 {
		return decimal.Zero
	}
	return m.sum.Div(decimal.NewFromInt(m.n))
}

// Metric is a metric's state.
type Metric struct {
	Def      Def
	Stats    Moving
	Capacity *decimal.Decimal
	// current, when set, overrides the value derived from the samples (the
	// CPU metrics compute it from another counter).
	current *decimal.Decimal
}

// Current returns the reported current value.
func (m *Metric) Current() decimal.Decimal {
	if m.current != nil {
		return *m.current
	}
	switch m.Def.Current {
	case CurrentRate:
		return m.Stats.Rate()
	case CurrentDiff:
		return m.Stats.Diff()
	}
	return m.Stats.Last()
}

var (
	q3      = decimal.New(1, -3)
	hundred = decimal.NewFromInt(100)
)

// fmtDec rounds to places and strips trailing zeros ("1024", "12.5"),
// like Backend.AI's remove_exponent(quantize(...)).
func fmtDec(d decimal.Decimal, places int32) string {
	r := d.Round(places)
	if r.Equal(r.Truncate(0)) {
		return r.Truncate(0).String()
	}
	return r.String()
}

// Value serializes MetricValue.
func (m *Metric) Value() map[string]any {
	cur := m.Current()
	out := map[string]any{
		"current":       fmtDec(cur, 3),
		"capacity":      nil,
		"pct":           "0.00",
		"unit_hint":     m.Def.Unit,
		"stats.version": 2,
	}
	if m.Capacity != nil {
		out["capacity"] = fmtDec(*m.Capacity, 3)
		if m.Capacity.IsPositive() {
			out["pct"] = fmtDec(cur.Div(*m.Capacity).Mul(hundred), 2)
		}
	}
	for _, k := range m.Def.Filter {
		var v decimal.Decimal
		switch k {
		case "min":
			v = m.Stats.min
		case "max":
			v = m.Stats.max
		case "sum":
			v = m.Stats.sum
		case "avg":
			v = m.Stats.Avg()
		case "diff":
			v = m.Stats.Diff()
		case "rate":
			v = m.Stats.Rate()
		}
		out["stats."+k] = fmtDec(v, 3)
	}
	return out
}

// Metric definitions, as the Python agent declares them.
var (
	DefCPUUtil = Def{Key: "cpu_util", Unit: "percent", Filter: []string{"avg", "max"}}
	DefCPUUsed = Def{Key: "cpu_used", Unit: "msec", Filter: []string{"diff"}}
	DefMem     = Def{Key: "mem", Unit: "bytes", Filter: []string{"max"}}
	DefIORead  = Def{Key: "io_read", Unit: "bytes", Filter: []string{"rate"}}
	DefIOWrite = Def{Key: "io_write", Unit: "bytes", Filter: []string{"rate"}}
	// Network counters report the rate as current; stats.max is the
	// largest cumulative counter seen, i.e. the bytes moved so far.
	DefNetRx         = Def{Key: "net_rx", Unit: "bps", Filter: []string{"max"}, Current: CurrentRate}
	DefNetTx         = Def{Key: "net_tx", Unit: "bps", Filter: []string{"max"}, Current: CurrentRate}
	DefIOScratchSize = Def{Key: "io_scratch_size", Unit: "bytes", Filter: []string{"max"}}
	DefDisk          = Def{Key: "disk", Unit: "bytes"}
)
