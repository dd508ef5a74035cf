package stats

import (
	"math"
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

// Moving is MovingStatistics: min, max, sum, avg over all samples, and
// diff/rate over the last two (a negative diff is a counter reset,
// reported as 0).
//
// The samples are whole bytes or microsecond-precise milliseconds, so
// they are kept in thousandths as int64: a collection cycle updates about
// twenty of them per container, and decimal arithmetic allocated three
// times per update (most of a cycle's garbage). A sample that does not
// fit (finer than a thousandth, or past 9.2e15) or a sum that would
// overflow switches the metric to exact decimals for good, so the
// figures are the same either way.
type Moving struct {
	n            int64
	lastT, prevT time.Time
	// thousandths (the fast path)
	last, prev, min, max, sum int64
	// exact: the decimal fields hold the values from then on.
	exact                          bool
	dlast, dprev, dmin, dmax, dsum decimal.Decimal
}

// maxMilli is the largest whole-unit sample the fast path holds.
const maxMilli = math.MaxInt64 / 1000

var maxInt64 = decimal.NewFromInt(math.MaxInt64)

// UpdateUint adds a sample of whole units (bytes, milliseconds).
func (m *Moving) UpdateUint(v uint64, t time.Time) {
	if v > maxMilli {
		m.Update(decimal.NewFromUint64(v), t)
		return
	}
	m.UpdateMilli(int64(v)*1000, t)
}

// UpdateThousandths adds a sample given in thousandths of the unit
// (microseconds for a metric in milliseconds).
func (m *Moving) UpdateThousandths(x uint64, t time.Time) {
	if x > math.MaxInt64 {
		m.Update(decimal.NewFromUint64(x).Shift(-3), t)
		return
	}
	m.UpdateMilli(int64(x), t)
}

// UpdateMilli adds a sample given in thousandths.
func (m *Moving) UpdateMilli(x int64, t time.Time) {
	if !m.exact {
		if sum, ok := addInt64(m.sum, x); ok {
			if m.n == 0 || x < m.min {
				m.min = x
			}
			if m.n == 0 || x > m.max {
				m.max = x
			}
			m.sum = sum
			m.n++
			m.prev, m.prevT = m.last, m.lastT
			m.last, m.lastT = x, t
			return
		}
		m.toExact()
	}
	m.updateExact(decimal.New(x, -3), t)
}

// Update adds a decimal sample (plugin measures, node CPU): on the fast
// path when it is a whole number of thousandths in range.
func (m *Moving) Update(v decimal.Decimal, t time.Time) {
	if !m.exact {
		if s := v.Shift(3); s.IsInteger() && s.Abs().LessThanOrEqual(maxInt64) {
			m.UpdateMilli(s.IntPart(), t)
			return
		}
		m.toExact()
	}
	m.updateExact(v, t)
}

func addInt64(a, b int64) (int64, bool) {
	s := a + b
	if (b > 0 && s < a) || (b < 0 && s > a) {
		return 0, false
	}
	return s, true
}

func milli(x int64) decimal.Decimal { return decimal.New(x, -3) }

// toExact moves the fast-path state into the decimal fields.
func (m *Moving) toExact() {
	m.exact = true
	m.dlast, m.dprev, m.dmin, m.dmax, m.dsum = milli(m.last), milli(m.prev), milli(m.min), milli(m.max), milli(m.sum)
}

func (m *Moving) updateExact(v decimal.Decimal, t time.Time) {
	if m.n == 0 || v.LessThan(m.dmin) {
		m.dmin = v
	}
	if m.n == 0 || v.GreaterThan(m.dmax) {
		m.dmax = v
	}
	m.dsum = m.dsum.Add(v)
	m.n++
	m.dprev, m.prevT = m.dlast, m.lastT
	m.dlast, m.lastT = v, t
}

func (m *Moving) pick(fast int64, exact decimal.Decimal) decimal.Decimal {
	if m.exact {
		return exact
	}
	return milli(fast)
}

// Last returns the last sample (0 if none).
func (m *Moving) Last() decimal.Decimal {
	if m.n == 0 {
		return decimal.Zero
	}
	return m.pick(m.last, m.dlast)
}

// Min, Max and Sum are over all samples (0 if none).
func (m *Moving) Min() decimal.Decimal { return m.pick(m.min, m.dmin) }
func (m *Moving) Max() decimal.Decimal { return m.pick(m.max, m.dmax) }
func (m *Moving) Sum() decimal.Decimal { return m.pick(m.sum, m.dsum) }

// Diff is last - previous, clamped at 0.
func (m *Moving) Diff() decimal.Decimal {
	if m.n < 2 {
		return decimal.Zero
	}
	if !m.exact {
		if m.last <= m.prev {
			return decimal.Zero
		}
		return milli(m.last - m.prev)
	}
	d := m.dlast.Sub(m.dprev)
	if d.IsNegative() {
		return decimal.Zero
	}
	return d
}

// Rate is Diff per wall-clock second.
func (m *Moving) Rate() decimal.Decimal {
	if m.n < 2 {
		return decimal.Zero
	}
	secs := m.lastT.Sub(m.prevT).Seconds()
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
	return m.Sum().Div(decimal.NewFromInt(m.n))
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
			v = m.Stats.Min()
		case "max":
			v = m.Stats.Max()
		case "sum":
			v = m.Stats.Sum()
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
