package metrics

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
)

// Every metric docs/grafana-dashboard.json queries is one a scrape of the
// agent's /metrics endpoint offers (the same check runs against a real
// agent in internal/app's monitoring integration test).
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	used, err := DashboardMetrics(b)
	if err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if len(used) < 20 {
		t.Fatalf("only %d metrics found in the dashboard: %v", len(used), used)
	}
	a := NewAgent()
	s, err := Start(a.Reg, Options{Addr: "127.0.0.1:0", Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	resp, err := http.Get("http://" + s.Addr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	have := ExposedNames(string(body))
	for _, m := range used {
		if !have[m] {
			t.Errorf("the dashboard queries %s, which the agent does not export", m)
		}
	}
	// The check can fail: a name the agent does not export is caught.
	if bad, _ := DashboardMetrics([]byte(`{"panels":[{"targets":[{"expr":"rate(backendai_no_such_total[5m])"}]}]}`)); len(bad) != 1 || have[bad[0]] {
		t.Fatalf("DashboardMetrics on a bad dashboard: %v", bad)
	}
}
