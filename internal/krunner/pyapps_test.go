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

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// The python runtime's built-in apps: jupyter runs "<python> -m notebook
// --no-browser --config <file>" with upstream's settings (here a stand-in
// notebook module that serves on the configured port); an app whose
// module is not installed is refused with the reason.
func TestPythonRuntimeApps(t *testing.T) {
	py := "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		testutil.Missing(t, "python3 (apt-get install python3)")
	}
	mods := t.TempDir()
	_ = os.MkdirAll(filepath.Join(mods, "notebook"), 0o755)
	_ = os.WriteFile(filepath.Join(mods, "notebook", "__init__.py"), nil, 0o644)
	// Reads the port from the config file as traitlets would, and shows
	// its argv and the settings at /.
	_ = os.WriteFile(filepath.Join(mods, "notebook", "__main__.py"), []byte(`
import http.server, json, re, sys
conf = open(sys.argv[sys.argv.index("--config") + 1]).read()
port = int(re.search(r"c\.ServerApp\.port = (\d+)", conf).group(1))
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"argv": sys.argv[1:], "conf": conf}).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("0.0.0.0", port), H).serve_forever()
`), 0o644)
	a := startRunner(t, "python", func(o *Options) {
		o.RuntimePath = py
		o.Env = append(o.Env, "PYTHONPATH="+mods)
	})
	port := freePort(t)
	start := func(name string) map[string]any {
		body, _ := json.Marshal(map[string]any{"name": name, "port": port, "ports": []int{port}, "protocol": "http", "options": map[string]any{}})
		a.send("start-service", string(body))
		_, rec := a.until("service-result")
		var m map[string]any
		_ = json.Unmarshal([]byte(rec.data), &m)
		return m
	}
	if r := start("jupyter"); r["status"] != "started" {
		t.Fatalf("jupyter: %v", r)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got struct {
		Argv []string
		Conf string
	}
	_ = json.Unmarshal(b, &got)
	if len(got.Argv) != 3 || got.Argv[0] != "--no-browser" || got.Argv[1] != "--config" ||
		!strings.Contains(got.Conf, `c.NotebookApp.ip = "0.0.0.0"`) || !strings.Contains(got.Conf, `c.ServerApp.token = ""`) || !strings.Contains(got.Conf, "allow_root = True") {
		t.Fatalf("jupyter command line %q, config:\n%s", got.Argv, got.Conf)
	}
	a.send("shutdown-service", `"jupyter"`)
	if r := start("digits"); r["status"] != "failed" || r["error"] != "unsupported service: digits (the python module digits is not installed)" {
		t.Fatalf("digits: %v", r)
	}
	if r := start("no-such-app"); r["error"] != "unsupported service: no-such-app" {
		t.Fatalf("unknown app: %v", r)
	}
}
