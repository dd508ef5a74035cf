package agent

import (
	"context"
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

// An inference session as the manager starts it: a model folder mounted
// at /models with usage_mode "model", the resolved model definition in
// internal_data. The kernel advertises "<model>-<port>" (is_inference),
// carries BACKEND_MODEL_*, and the runner starts the model service in
// /models with its health check: it answers through the kernel's host
// port. A model service that cannot come up destroys the kernel with
// failed-to-start; a model whose start command is missing uses the
// image's Cmd.
func TestInferenceSession_Integration(t *testing.T) {
	e := newEnv(t, nil)
	img := testutil.TestImageWith(t, map[string]string{"ai.backend.runtime-type": "shell"})
	modelDir := filepath.Join(e.vfroot, "llama")
	_ = os.MkdirAll(modelDir, 0o755)
	_ = os.WriteFile(filepath.Join(modelDir, "health"), []byte("ok"), 0o644)
	_ = os.WriteFile(filepath.Join(modelDir, "v1"), []byte("42 tokens"), 0o644)
	inference := func(service map[string]any) func(c *CreationConfig) {
		return func(c *CreationConfig) {
			c.Image.Canonical = img
			c.SessionType = "inference"
			c.Mounts = []MountSpec{{Name: "llama", VFID: "vf-llama", HostPath: modelDir, KernelPath: "/models", MountPerm: "ro", UsageMode: "model"}}
			c.InternalData = map[string]any{"model_definition": map[string]any{"models": []any{
				map[string]any{"name": "llama", "model_path": "/models", "service": service},
			}}}
		}
	}
	hc := map[string]any{"enable": true, "path": "/health", "interval": 0.5, "max_retries": 30, "max_wait_time": 2.0, "expected_status_code": 200}
	info := e.create(inference(map[string]any{"start_command": "sleep 1; exec busybox httpd -f -p 8000 -h .", "shell": "/bin/bash", "port": 8000, "health_check": hc}))
	var port int
	for _, sp := range info.ServicePorts {
		if sp.Name == "llama-8000" {
			if !sp.IsInference || sp.Protocol != "preopen" {
				t.Fatalf("model service port %+v", sp)
			}
			port = sp.HostPorts[0]
		}
	}
	if port == 0 {
		t.Fatalf("no llama-8000 service port: %+v", info.ServicePorts)
	}
	var body string
	testutil.Eventually(t, 60*time.Second, "the model service answers through its host port", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://%s:%d/v1", info.KernelHost, port))
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
		return resp.StatusCode == 200
	})
	if body != "42 tokens" {
		t.Fatalf("model service body %q", body)
	}
	res := e.exec(info.ID, "m1", "query", "echo $BACKEND_MODEL_NAME $BACKEND_MODEL_PATH", flushIn(20*time.Second))
	if console(res, "stdout") != "llama /models\n" {
		t.Fatalf("model environment: %v", res)
	}
	if _, ok := e.agent.Kernel(info.ID); !ok {
		t.Fatal("a healthy inference kernel was destroyed")
	}

	// A model service that exits at once: the kernel goes with
	// failed-to-start, and nothing is left.
	bad := e.create(inference(map[string]any{"start_command": "echo no GPU >&2; exit 1", "port": 8000, "health_check": hc}))
	testutil.Eventually(t, 60*time.Second, "failed-to-start", func() bool {
		p, ok := e.events.find("kernel_terminated", bad.ID)
		return ok && p["reason"] == ReasonFailedToStart
	})
	if _, ok := e.agent.Kernel(bad.ID); ok {
		t.Fatal("the kernel whose model service failed is still registered")
	}
	if list, _ := e.be.List(context.Background(), map[string]string{LabelKernelID: bad.ID}); len(list) != 0 {
		t.Fatal("its container is left")
	}

	// Refused before anything is taken: no model folder.
	_, err := e.agent.CreateKernels(context.Background(), e.request("00000000-0000-4000-8000-00000000abcd", func(c *CreationConfig) {
		inference(nil)(c)
		c.Mounts[0].UsageMode = "general"
	}))
	if err == nil || !strings.Contains(err.Error(), "At least one model virtual folder must be specified") {
		t.Fatalf("no model folder: %v", err)
	}
}
