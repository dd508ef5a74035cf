package krunner

import (
	"encoding/json"
	"fmt"
	"github.com/bai-agent/bai-agent/internal/testutil"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestInterpolate(t *testing.T) {
	vars := map[string]any{"ports": []any{8080, 8081}, "runtime_path": "/usr/bin/python3", "cfg": map[string]any{"out": "x"}}
	for _, tc := range []struct{ in, want string }{
		{"{runtime_path} -m http.server {ports[0]}", "/usr/bin/python3 -m http.server 8080"},
		{"${{ ports[1] }}", "8081"},
		{"echo ${HOME} {cfg.out} {cfg[\"out\"]}", "echo ${HOME} x x"},
	} {
		if got, err := interpolate(tc.in, vars); err != nil || got != tc.want {
			t.Errorf("%q: %q %v", tc.in, got, err)
		}
	}
	for _, bad := range []string{"{nope}", "{ports[5]}", "{ports", "${{ x"} {
		if _, err := interpolate(bad, vars); err == nil || !strings.Contains(err.Error(), "InvalidServiceDefinition") {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

func TestServices(t *testing.T) {
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		testutil.Missing(t, "busybox-static (apt-get install busybox-static)")
	}
	defs := t.TempDir()
	old := ServiceDefDir
	ServiceDefDir = defs
	// Cleanups run last-registered first: the runner (startRunner's
	// cleanup) stops before the globals it reads are restored.
	t.Cleanup(func() { ServiceDefDir = old })
	docroot := t.TempDir()
	_ = os.WriteFile(filepath.Join(docroot, "hello.txt"), []byte("served"), 0o644)
	web := map[string]any{
		"command":           []any{bb, "httpd", "-f", "-p", "{ports[0]}", "-h", docroot},
		"url_template":      "http://{host}:{port}/",
		"allowed_arguments": []any{"-v"},
		"prestart":          []any{map[string]any{"action": "write_tempfile", "args": map[string]any{"body": []any{"x"}}, "ref": "tmp"}},
	}
	b, _ := json.Marshal(web)
	_ = os.WriteFile(filepath.Join(defs, "web.json"), b, 0o644)
	_ = os.WriteFile(filepath.Join(defs, "broken.json"), []byte(`{"command": ["x"], "bogus": 1}`), 0o644)
	_ = os.WriteFile(filepath.Join(defs, "never.json"), []byte(`{"command": ["`+bb+`", "sleep", "100"]}`), 0o644)
	oldTimeout := serviceLaunchTimeout
	serviceLaunchTimeout = 2 * time.Second
	t.Cleanup(func() { serviceLaunchTimeout = oldTimeout })
	a := startRunner(t, "app")
	a.send("get-apps", "")
	_, apps := a.until("apps-result")
	if !strings.Contains(apps.data, `"name":"web"`) || !strings.Contains(apps.data, `"url_template":"http://{host}:{port}/"`) || strings.Contains(apps.data, "broken") {
		t.Fatalf("apps %s", apps.data)
	}
	port := freePort(t)
	start := func(name, proto string, opts map[string]any) map[string]any {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"name": name, "port": port, "ports": []int{port}, "protocol": proto, "options": opts})
		a.send("start-service", string(body))
		_, rec := a.until("service-result")
		var m map[string]any
		_ = json.Unmarshal([]byte(rec.data), &m)
		return m
	}
	if r := start("web", "http", nil); r["status"] != "started" {
		t.Fatalf("start web: %v", r)
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/hello.txt", port))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET: %v %v", resp, err)
	}
	resp.Body.Close()
	if r := start("web", "http", nil); r["status"] != "running" {
		t.Fatalf("second start: %v", r)
	}
	a.send("shutdown-service", `"web"`)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("port still open after shutdown-service")
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if r := start("web", "http", map[string]any{"arguments": map[string]any{"-v": nil}}); r["status"] != "started" {
		t.Fatalf("restart with an allowed argument: %v", r)
	}
	a.send("shutdown-service", `"web"`)
	for _, tc := range []struct {
		name, proto string
		opts        map[string]any
		want        string
	}{
		{"web2", "http", nil, "unsupported service: web2"},
		{"web", "http", map[string]any{"arguments": map[string]any{"--evil": "x"}}, "DisallowedArgument('Argument --evil not allowed for service web')"},
		{"web", "http", map[string]any{"envs": map[string]any{"X": "1"}}, "DisallowedEnvironment"},
		{"never", "http", nil, "opening the service port timed out: never"},
		{"term", "pty", nil, "not implemented yet"},
	} {
		time.Sleep(300 * time.Millisecond)
		if r := start(tc.name, tc.proto, tc.opts); r["status"] != "failed" || !strings.Contains(fmt.Sprint(r["error"]), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, r, tc.want)
		}
	}
	if r := start("9000", "preopen", nil); r["status"] != "started" {
		t.Errorf("preopen: %v", r)
	}
}

func TestFormatMap(t *testing.T) {
	vars := map[string]any{"tmp": "/tmp/x.py", "ports": []any{8080}}
	if got, err := formatMap("python {tmp} --port {ports[0]} {{literal}}", vars); err != nil || got != "python /tmp/x.py --port 8080 {literal}" {
		t.Fatalf("%q %v", got, err)
	}
}
