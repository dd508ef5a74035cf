package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/bai-agent/bai-agent/internal/backend/docker"
	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/accel"
	"github.com/bai-agent/bai-agent/internal/kernel"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// loadAccels loads the accelerator plugins the configuration asks for, as
// the agent binary does.
func loadAccels(t testing.TB, cfg *config.Config, be *docker.Backend) []device.Accelerator {
	t.Helper()
	accs, err := accel.Load(context.Background(), accel.Options{
		Allow: cfg.Agent.AllowComputePlugins, Block: cfg.Agent.BlockComputePlugins,
		MockConfig: cfg.Agent.MockAcceleratorConfig, Engine: be, Getenv: func(string) string { return "" },
	})
	if err != nil {
		t.Fatal(err)
	}
	return accs
}

func mockGPUConfig(t *testing.T, dir string) func(*config.Config) {
	t.Helper()
	path := filepath.Join(dir, "mock-accelerator.toml")
	if err := os.WriteFile(path, []byte(testutil.MockTwoGPUs), 0o644); err != nil {
		t.Fatal(err)
	}
	return func(c *config.Config) {
		c.Agent.AllowComputePlugins = []string{"ai.backend.accelerator.mock"}
		c.Agent.MockAcceleratorConfig = path
	}
}

func containerEnv(t *testing.T, e *env, cid string) map[string]string {
	t.Helper()
	code, out := testutil.Exec(context.Background(), e.be, cid, "env")
	if code != 0 {
		t.Fatalf("env in container: %d %q", code, out)
	}
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// The whole GPU path on real Docker with the mock accelerator: slots,
// allocation, environment, resource.txt, alloc map, creation result and
// event, exhaustion, destroy.
func TestMockGPUKernels_Integration(t *testing.T) {
	e := newEnv(t, mockGPUConfig(t, t.TempDir()))
	ctx := context.Background()
	if got := e.agent.Allocator().Available()["cuda.device"]; got.String() != "2" {
		t.Fatalf("cuda.device advertised %s, want 2", got)
	}
	if e.agent.SlotTypes()["cuda.device"] != resource.SlotCount {
		t.Fatalf("slot types %v", e.agent.SlotTypes())
	}
	gpu := func(n string) func(*CreationConfig) {
		return func(c *CreationConfig) {
			c.ResourceSlots = map[string]string{"cpu": "1", "mem": "134217728", "cuda.device": n}
		}
	}
	k1 := e.create(gpu("1"))
	env1 := containerEnv(t, e, k1.ContainerID)
	for k, want := range map[string]string{
		"GPU_TYPE": "cuda", "GPU_MODEL_NAME": "Mock H100", "GPU_COUNT": "1", "N_GPUS": "1", "GPU_CONFIG": "0:80g",
		"TF_GPU_MEMORY_ALLOC": "0:81920", "BACKENDAI_MOCK_CUDA_DEVICE_COUNT": "1", "TF_MIN_GPU_MULTIPROCESSOR_COUNT": "4",
	} {
		if env1[k] != want {
			t.Errorf("kernel 1 env %s=%q, want %q", k, env1[k], want)
		}
	}
	dev1 := env1["BACKENDAI_MOCK_CUDA_DEVICES"]
	if dev1 != "gpu-a" && dev1 != "gpu-b" {
		t.Fatalf("BACKENDAI_MOCK_CUDA_DEVICES=%q", dev1)
	}
	code, rt := testutil.Exec(ctx, e.be, k1.ContainerID, "cat", "/home/config/resource.txt")
	if code != 0 || !strings.Contains(rt, "CUDA.DEVICE_SHARES="+dev1+":1\n") || !strings.Contains(rt, "CUDA_GLOBAL_DEVICE_IDS=0:"+dev1+"\n") || !strings.Contains(rt, "CUDA_RESOURCE_VIRTUALIZED=0\n") {
		t.Fatalf("resource.txt in the container:\n%s", rt)
	}
	if code, et := testutil.Exec(ctx, e.be, k1.ContainerID, "cat", "/home/config/environ.txt"); code != 0 || !strings.Contains(et, "BACKENDAI_MOCK_CUDA_DEVICES="+dev1+"\n") {
		t.Fatalf("environ.txt lacks the accelerator environment:\n%s", et)
	}
	if att := k1.Attached["cuda"]; len(att) != 1 || att[0].DeviceID != dev1 || att[0].Data["mem"] != int64(80<<30) || att[0].Data["smp"] != int64(132) {
		t.Fatalf("attached_devices.cuda = %+v", att)
	}
	ev, ok := e.events.find("kernel_started", k1.ID)
	if !ok {
		t.Fatal("no kernel_started")
	}
	unit := dig(ev, "creation_info", "used_devices", "units", "cuda", dev1)
	if unit == nil || unit["model_name"] != "Mock H100" || fmt.Sprint(unit["memory_size"]) != fmt.Sprint(float64(80<<30)) || unit["processing_units"] != nil {
		t.Fatalf("kernel_started used_devices.units.cuda[%s] = %v", dev1, unit)
	}

	// A second kernel gets the other GPU; a third finds none and leaves
	// nothing behind.
	k2 := e.create(gpu("1"))
	dev2 := containerEnv(t, e, k2.ContainerID)["BACKENDAI_MOCK_CUDA_DEVICES"]
	if dev2 == dev1 || dev2 == "" {
		t.Fatalf("second kernel got %q, first has %q", dev2, dev1)
	}
	if m := e.agent.ScanGPUAllocMap(); m[dev1] != "1" || m[dev2] != "1" || len(m) != 2 {
		t.Fatalf("scan_gpu_alloc_map %v", m)
	}
	kid3 := uuid.NewString()
	_, err := e.agent.CreateKernels(ctx, e.request(kid3, gpu("1")))
	if !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("third GPU kernel: %v", err)
	}
	if list, _ := e.be.List(ctx, map[string]string{LabelKernelID: kid3}); len(list) != 0 {
		t.Fatal("a container was left by the refused request")
	}
	// (The CI machine has two cores: free one for the next kernel.)
	kk2, _ := e.agent.Kernel(k2.ID)
	if err := e.agent.DestroyKernel(ctx, k2.ID, kk2.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	// A CPU-only kernel on the GPU node: no GPU environment.
	k3 := e.create(gpu("0"))
	env3 := containerEnv(t, e, k3.ContainerID)
	if env3["GPU_COUNT"] != "0" || env3["N_GPUS"] != "0" || env3["BACKENDAI_MOCK_CUDA_DEVICES"] != "" || env3["GPU_TYPE"] != "" {
		t.Fatalf("CPU-only kernel has GPU env: %v", env3)
	}
	// Per-kernel GPU measures are attributed through the allocation.
	ms := e.agent.AcceleratorContainerMeasures(ctx)
	if len(ms) == 0 || ms[0].Def.Key != "cuda_mem" || len(ms[0].PerKernel) != 1 || ms[0].PerKernel[k1.ID].Value.String() != fmt.Sprint(int64(40<<30)) {
		t.Fatalf("container measures %+v", ms)
	}
	// Destroy frees the device.
	kk, _ := e.agent.Kernel(k1.ID)
	if err := e.agent.DestroyKernel(ctx, k1.ID, kk.SessionID, "", false); err != nil {
		t.Fatal(err)
	}
	if m := e.agent.ScanGPUAllocMap(); m[dev1] != "" {
		t.Fatalf("destroyed kernel still in the alloc map: %v", m)
	}
	if used := e.agent.Allocator().Used()["cuda.device"]; !used.IsZero() {
		t.Fatalf("cuda.device used %s after destroying both GPU kernels", used)
	}
	k4 := e.create(gpu("2"))
	if got := containerEnv(t, e, k4.ContainerID)["BACKENDAI_MOCK_CUDA_DEVICES"]; got != "gpu-a,gpu-b" {
		t.Fatalf("both freed GPUs not handed out again: got %q", got)
	}
}

// A GPU kernel survives the agent's SIGKILL: the restarted agent adopts
// it with its device still allocated.
func TestMockGPURecoveryAfterSIGKILL_Integration(t *testing.T) {
	dir := t.TempDir()
	withMock := mockGPUConfig(t, dir)
	e := newEnv(t, withMock)
	e.agent.Close()
	e.agent = nil
	cfgPath := e.configFile(fmt.Sprintf("allow-compute-plugins=[\"ai.backend.accelerator.mock\"]\nmock-accelerator-config=%q\n", e.cfg.Agent.MockAcceleratorConfig))
	kid := uuid.NewString()
	runHelperAndKill(t, cfgPath, kid, e.image, "BAI_HELPER_SLOTS=cuda.device=2")
	e.agent = e.start()
	k, ok := e.agent.Kernel(kid)
	if !ok || k.State() != kernel.Running {
		t.Fatalf("GPU kernel not adopted: %v", ok)
	}
	if used := e.agent.Allocator().Used()["cuda.device"]; used.String() != "2" {
		t.Fatalf("cuda.device used %s after restart, want 2", used)
	}
	if m := e.agent.ScanGPUAllocMap(); m["gpu-a"] != "1" || m["gpu-b"] != "1" {
		t.Fatalf("alloc map after restart %v", m)
	}
	_, err := e.agent.CreateKernels(context.Background(), e.request(uuid.NewString(), func(c *CreationConfig) {
		c.ResourceSlots = map[string]string{"cpu": "1", "mem": "134217728", "cuda.device": "1"}
	}))
	if !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("a GPU was handed out twice after restart: %v", err)
	}
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, ok := m[k].(map[string]any)
		if !ok {
			return nil
		}
		m = next
	}
	return m
}
