package stats

import (
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
