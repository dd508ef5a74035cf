package krunner

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// Model services (start-model-service): the start command runs as a
// service "<model>-<port>" in the model directory; with a health check
// the answer waits for the first healthy probe; a service that exits, a
// missing directory or a failing health check answer failed; a later
// health change is reported as model-service-status.
func TestModelService(t *testing.T) {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		testutil.Missing(t, "busybox-static (apt-get install busybox-static)")
	}
	a := startRunner(t, "app")
	modelDir := t.TempDir()
	_ = os.WriteFile(filepath.Join(modelDir, "health"), []byte("ok"), 0o644)
	_ = os.WriteFile(filepath.Join(modelDir, "v1"), []byte("model answer"), 0o644)
	start := func(m map[string]any) map[string]any {
		t.Helper()
		b, _ := json.Marshal(m)
		a.send("start-model-service", string(b))
		_, rec := a.until("model-service-result")
		var res map[string]any
		if err := json.Unmarshal([]byte(rec.data), &res); err != nil {
			t.Fatal(err)
		}
		return res
	}
	port := freePort(t)
	hc := map[string]any{"enable": true, "path": "/health", "interval": 0.2, "max_retries": 20, "max_wait_time": 1, "expected_status_code": 200}
	// httpd serves the model directory: it must run with cwd = model_path
	// ("-h ." below), after a prestart action.
	model := map[string]any{"name": "llm", "model_path": modelDir, "service": map[string]any{
		"start_command":     fmt.Sprintf("sleep 0.5; exec %s httpd -f -p %d -h .", bb, port),
		"shell":             "/bin/bash",
		"port":              port,
		"pre_start_actions": []any{map[string]any{"action": "write_file", "args": map[string]any{"body": "x", "filename": filepath.Join(t.TempDir(), "pre")}}},
		"health_check":      hc,
	}}
	t0 := time.Now()
	if res := start(model); res["status"] != "started" {
		t.Fatalf("start: %v", res)
	}
	if d := time.Since(t0); d < 400*time.Millisecond {
		t.Fatalf("answered after %s, before the first healthy probe could pass", d)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1", port))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "model answer" {
		t.Fatalf("the model service does not serve the model directory: %q", body)
	}
	if res := start(model); res["status"] != "running" {
		t.Fatalf("second start: %v", res)
	}
	// The health file goes: unhealthy after max_retries failures.
	_ = os.Remove(filepath.Join(modelDir, "health"))
	recs, st := a.until("model-service-status")
	for !strings.Contains(st.data, `"is_healthy":false`) {
		recs, st = a.until("model-service-status")
	}
	_ = recs
	a.send("shutdown-service", `"llm-`+fmt.Sprint(port)+`"`)

	for _, tc := range []struct {
		name string
		m    map[string]any
		want string
	}{
		{"no service", map[string]any{"name": "m", "model_path": modelDir}, "service info not provided"},
		{"no directory", map[string]any{"name": "m", "model_path": "/nonexistent", "service": map[string]any{"start_command": "true", "port": freePort(t)}}, "the model directory does not exist: /nonexistent"},
		{"exits at once", map[string]any{"name": "m", "model_path": modelDir, "service": map[string]any{"start_command": "exit 3", "port": freePort(t), "health_check": hc}}, "the process did not start properly"},
		{"never healthy", map[string]any{"name": "m", "model_path": modelDir, "service": map[string]any{"start_command": bb + " sleep 100", "port": freePort(t),
			"health_check": map[string]any{"enable": true, "interval": 0.1, "max_retries": 2, "max_wait_time": 0.2}}}, "did not pass its health check"},
		{"missing executable", map[string]any{"name": "m", "model_path": modelDir, "service": map[string]any{"start_command": []any{"/no/such/server"}, "port": freePort(t)}}, "the executable file is not found: /no/such/server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := start(tc.m)
			if res["status"] != "failed" || !strings.Contains(fmt.Sprint(res["error"]), tc.want) {
				t.Fatalf("got %v, want failed %q", res, tc.want)
			}
		})
	}
	// Without a health check: started once the port opens.
	p2 := freePort(t)
	if res := start(map[string]any{"name": "plain", "model_path": modelDir, "service": map[string]any{"start_command": fmt.Sprintf("exec %s httpd -f -p %d -h .", bb, p2), "port": p2}}); res["status"] != "started" {
		t.Fatalf("plain start: %v", res)
	}
	if !portOpen(p2) {
		t.Fatal("started before its port opened")
	}
	a.send("shutdown-service", fmt.Sprintf(`"plain-%d"`, p2))
}
