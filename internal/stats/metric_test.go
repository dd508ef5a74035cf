package stats

import (
	"fmt"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestMetricValueSerialization(t *testing.T) {
	t0 := time.Unix(1000, 0)
	capacity := decimal.NewFromInt(1000)
	m := &Metric{Def: Def{Key: "cpu_util", Unit: "percent", Filter: []string{"avg", "max", "diff", "rate"}, Current: CurrentRate}, Capacity: &capacity}
	m.Stats.Update(decimal.NewFromInt(1000), t0)
	m.Stats.Update(decimal.NewFromInt(1500), t0.Add(2*time.Second))
	v := m.Value()
	want := map[string]any{
		"current": "250", "capacity": "1000", "pct": "25", "unit_hint": "percent",
		"stats.avg": "1250", "stats.max": "1500", "stats.diff": "500", "stats.rate": "250", "stats.version": 2,
	}
	for k, w := range want {
		if v[k] != w {
			t.Errorf("%s = %v, want %v", k, v[k], w)
		}
	}
	// Counter reset: negative diff reads as 0; no capacity: pct "0.00".
	g := &Metric{Def: Def{Key: "x", Unit: "bytes", Filter: []string{"diff"}}}
	g.Stats.Update(decimal.NewFromInt(10), t0)
	g.Stats.Update(decimal.RequireFromString("3.14159"), t0.Add(time.Second))
	v = g.Value()
	if v["stats.diff"] != "0" || v["pct"] != "0.00" || v["capacity"] != nil || v["current"] != "3.142" {
		t.Fatalf("got %v", v)
	}
	third := decimal.NewFromInt(3)
	h := &Metric{Def: Def{Key: "y"}, Capacity: &third}
	h.Stats.Update(decimal.NewFromInt(1), t0)
	if p := h.Value()["pct"]; p != "33.33" {
		t.Fatalf("pct %v", p)
	}
}

// refMoving is the plain decimal MovingStatistics the fast path must
// match figure for figure.
type refMoving struct {
	vals []decimal.Decimal
	ts   []time.Time
}

func (r *refMoving) check(t *testing.T, m *Moving, what string) {
	t.Helper()
	n := len(r.vals)
	min, max, sum := r.vals[0], r.vals[0], decimal.Zero
	for _, v := range r.vals {
		if v.LessThan(min) {
			min = v
		}
		if v.GreaterThan(max) {
			max = v
		}
		sum = sum.Add(v)
	}
	diff, rate := decimal.Zero, decimal.Zero
	if n >= 2 {
		if d := r.vals[n-1].Sub(r.vals[n-2]); d.IsPositive() {
			diff = d
			rate = d.Div(decimal.NewFromFloat(r.ts[n-1].Sub(r.ts[n-2]).Seconds()))
		}
	}
	for _, c := range []struct {
		name      string
		got, want decimal.Decimal
	}{
		{"last", m.Last(), r.vals[n-1]}, {"min", m.Min(), min}, {"max", m.Max(), max}, {"sum", m.Sum(), sum},
		{"avg", m.Avg(), sum.Div(decimal.NewFromInt(int64(n)))}, {"diff", m.Diff(), diff}, {"rate", m.Rate(), rate},
	} {
		if !c.got.Equal(c.want) {
			t.Errorf("%s: %s = %s, want %s", what, c.name, c.got, c.want)
		}
	}
}

func TestMovingFastPathMatchesDecimals(t *testing.T) {
	t0 := time.Unix(1000, 0)
	big := decimal.NewFromUint64(1 << 62)
	for _, tc := range []struct {
		name    string
		samples []decimal.Decimal
		exact   bool // whether the metric ends on the exact path
	}{
		{"bytes", []decimal.Decimal{decimal.NewFromInt(100), decimal.NewFromInt(4096), decimal.NewFromInt(50)}, false},
		{"msec with microseconds", []decimal.Decimal{decimal.RequireFromString("1.5"), decimal.RequireFromString("2.001"), decimal.RequireFromString("2.001")}, false},
		{"counter reset", []decimal.Decimal{decimal.NewFromInt(10), decimal.NewFromInt(3)}, false},
		{"finer than a thousandth", []decimal.Decimal{decimal.NewFromInt(10), decimal.RequireFromString("3.14159"), decimal.NewFromInt(20)}, true},
		{"past the fast range", []decimal.Decimal{decimal.NewFromInt(7), big, decimal.NewFromInt(9)}, true},
		{"sum overflows", []decimal.Decimal{decimal.NewFromInt(maxMilli), decimal.NewFromInt(maxMilli), decimal.NewFromInt(1)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Moving
			var ref refMoving
			for i, v := range tc.samples {
				ts := t0.Add(time.Duration(i*3) * time.Second)
				if v.IsInteger() && v.Sign() >= 0 && v.LessThanOrEqual(decimal.NewFromInt(maxMilli)) {
					m.UpdateUint(uint64(v.IntPart()), ts)
				} else {
					m.Update(v, ts)
				}
				ref.vals, ref.ts = append(ref.vals, v), append(ref.ts, ts)
				ref.check(t, &m, fmt.Sprintf("after sample %d", i))
			}
			if m.exact != tc.exact {
				t.Errorf("exact = %v, want %v", m.exact, tc.exact)
			}
		})
	}
	// Thousandths (container CPU: microseconds into milliseconds).
	var m Moving
	m.UpdateThousandths(1500, t0)
	m.UpdateThousandths(2501, t0.Add(time.Second))
	if m.Last().String() != "2.501" || m.Diff().String() != "1.001" || m.exact {
		t.Fatalf("thousandths: last %s diff %s exact %v", m.Last(), m.Diff(), m.exact)
	}
}
