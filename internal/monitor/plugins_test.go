package monitor_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/metrics"
	"github.com/bai-agent/bai-agent/internal/monitor"
	"github.com/bai-agent/bai-agent/internal/stats"
)

type gpus struct {
	mu  sync.Mutex
	ids []string
}

func (g *gpus) AcceleratorNodeMeasures(context.Context) []stats.NodeMeasure {
	g.mu.Lock()
	defer g.mu.Unlock()
	capacity := decimal.NewFromInt(100)
	m := stats.NodeMeasure{Def: stats.Def{Key: "cuda_util", Unit: "percent", Filter: []string{"avg"}}, PerDevice: map[string]stats.MeasureValue{}}
	for _, id := range g.ids {
		m.PerDevice[id] = stats.MeasureValue{Value: decimal.NewFromInt(42), Capacity: &capacity}
	}
	m.Node = stats.MeasureValue{Value: decimal.NewFromInt(42 * int64(len(g.ids))), Capacity: &capacity}
	return []stats.NodeMeasure{m}
}

func (g *gpus) AcceleratorContainerMeasures(context.Context) []stats.ContainerMeasure { return nil }

// Accelerator measures reach /metrics per device, and a device that stops
// being reported loses its series (no stale GPU lingers on dashboards).
func TestPluginDeviceSeries(t *testing.T) {
	am := metrics.NewAgent()
	g := &gpus{ids: []string{"0", "1"}}
	mon := monitor.Start(monitor.Options{
		AgentID: "i-gpu", Collector: stats.NewCollector(), Metrics: am, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Targets: func() []stats.Target { return nil }, Plugins: g,
		NodeInterval: 50 * time.Millisecond, ContainerInterval: time.Hour, ProcessInterval: time.Hour, NodeEnabled: true,
	})
	defer mon.Close()
	body := func() string {
		var b strings.Builder
		if err := am.Reg.WriteText(&b); err != nil {
			t.Fatal(err)
		}
		return b.String()
	}
	waitFor := func(what string, ok func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !ok(body()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s; /metrics:\n%s", what, body())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	series := `backendai_device_utilization{device_metric_name="cuda_util",agent_id="i-gpu",device_id="1",value_type="pct"} 42`
	waitFor("GPU 1's utilisation series", func(s string) bool { return strings.Contains(s, series) })
	// The host's own devices, as upstream's intrinsic plugins name them.
	for _, want := range []string{
		`backendai_device_utilization{device_metric_name="mem",agent_id="i-gpu",device_id="root",value_type="capacity"}`,
		`backendai_device_utilization{device_metric_name="mem",agent_id="i-gpu",device_id="root",value_type="pct"}`,
		`backendai_device_utilization{device_metric_name="net_rx",agent_id="i-gpu",device_id="node",value_type="current"}`,
		`backendai_device_utilization{device_metric_name="net_tx",agent_id="i-gpu",device_id="node",value_type="current"}`,
		`backendai_device_utilization{device_metric_name="disk",agent_id="i-gpu",device_id="/dev/`,
	} {
		if s := body(); !strings.Contains(s, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	g.mu.Lock()
	g.ids = []string{"0"}
	g.mu.Unlock()
	waitFor("GPU 1's series removed, GPU 0's kept", func(s string) bool {
		return !strings.Contains(s, `device_metric_name="cuda_util",agent_id="i-gpu",device_id="1"`) && strings.Contains(s, `device_metric_name="cpu_util",agent_id="i-gpu",device_id="0"`) && strings.Contains(s, `device_metric_name="cuda_util",agent_id="i-gpu",device_id="0"`)
	})
}
