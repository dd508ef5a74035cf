package app_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bai-agent/bai-agent/internal/testutil"
)

// A manager's GPU session (test/pypeer/manager_gpu_flow.py) against the
// agent binary running the mock accelerator, with etcd and Redis: the
// heartbeat's slots and plugins, computer.metadata, create_kernels with
// cuda.device, attached and used devices, scan_gpu_alloc_map, hwinfo, GPU
// statistics, exhaustion and destroy.
func TestManagerGPUFlow_Integration(t *testing.T) {
	py := managerPeerPython(t)
	img := testutil.TestImage(t)
	mockCfg := filepath.Join(t.TempDir(), "mock-accelerator.toml")
	if err := os.WriteFile(mockCfg, []byte(testutil.MockTwoGPUs), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newStack(t, fmt.Sprintf("allow-compute-plugins = [\"ai.backend.accelerator.mock\"]\nmock-accelerator-config = %q\n"+
		"[agent.utilization-metric.node]\ninterval = 2\n[agent.utilization-metric.container]\ninterval = 2\n", mockCfg))
	s.etcd.Put(t, "/sorna/"+s.ns+"/config/plugins/accelerator/mock/allocation_mode", "discrete")
	s.start()
	script := filepath.Join(testutil.ModuleRoot(t), "test", "pypeer", "manager_gpu_flow.py")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, script, "tcp://"+s.rpc, s.redis.Addr, s.id, img, s.vfroot).CombinedOutput()
	t.Logf("manager GPU flow:\n%s", out)
	if err != nil {
		t.Fatalf("manager GPU flow failed: %v", err)
	}
	if !strings.Contains(string(out), "all checks passed") {
		t.Fatal("the manager GPU flow did not finish")
	}
}
