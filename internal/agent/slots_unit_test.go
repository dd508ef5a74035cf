package agent

// The periodic device rescan (slots.go) on the fake runtime: the mock
// accelerator's file changes under a running agent.

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/config"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/device/mock"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/testutil"
)

// mockGPUsWithout is testutil.MockTwoGPUs without the line of device id.
func mockGPUsWithout(id string) string {
	var keep []string
	for _, l := range strings.Split(testutil.MockTwoGPUs, "\n") {
		if !strings.Contains(l, `"`+id+`"`) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func (r *recorder) agentErrors(kernelID, deviceID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Name != "agent_error" {
			continue
		}
		env, _ := e.Payload["context_env"].(map[string]any)
		if env["kernel_id"] == kernelID && env["device_id"] == deviceID && e.Payload["severity"] == "WARNING" {
			n++
		}
	}
	return n
}

func heldGPU(t *testing.T, c *core, kernelID string) resource.DeviceID {
	t.Helper()
	k, ok := c.agent.Kernel(kernelID)
	if !ok || k.Spec() == nil {
		t.Fatalf("kernel %s not running", kernelID)
	}
	ids := k.Spec().Allocation.Devices("cuda.device")
	if len(ids) != 1 {
		t.Fatalf("kernel %s holds %v", kernelID, ids)
	}
	return ids[0]
}

func TestSlotRescan_Fake(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "mock-accelerator.toml")
	writeFile(t, path, testutil.MockTwoGPUs)
	mcfg, err := mock.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	acc, err := mock.New(mcfg, device.ShareConfig{})
	if err != nil {
		t.Fatal(err)
	}
	c := newCore(t, func(cfg *config.Config) { cfg.Debug.SlotRescanInterval = 0.02 },
		func(o *Options) { o.Accelerators = []device.Accelerator{acc} })
	gpus := func() string {
		return resource.FormatAmount(c.agent.AgentInfo(InfoOptions{}).Available["cuda.device"])
	}
	hwinfo := func() string {
		h, _ := acc.NodeHWInfo()
		return h.Metadata["devices"]
	}
	if gpus() != "2" {
		t.Fatalf("available cuda.device %s at start", gpus())
	}
	gpu := func(r *CreationConfig) { r.ResourceSlots["cuda.device"] = "1" }
	first, err := c.create(gpu)
	if err != nil {
		t.Fatal(err)
	}
	lost := heldGPU(t, c, first.ID)
	other := resource.DeviceID("gpu-a")
	if lost == other {
		other = "gpu-b"
	}

	// The held device goes: the periodic task notices.
	writeFile(t, path, mockGPUsWithout(string(lost)))
	waitFor(t, 10*time.Second, "the heartbeat to advertise one GPU", func() bool { return gpus() == "1" })
	waitFor(t, 10*time.Second, "the kernel holding the lost GPU to be reported", func() bool { return c.events.agentErrors(first.ID, string(lost)) > 0 })
	if h := hwinfo(); strings.Contains(h, string(lost)) || !strings.Contains(h, string(other)) {
		t.Fatalf("hwinfo devices %q after %s went", h, lost)
	}
	// Reported once, not at every rescan.
	for i := 0; i < 3; i++ {
		if err := c.agent.RescanSlots(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.events.agentErrors(first.ID, string(lost)); n != 1 {
		t.Fatalf("%d reports of kernel %s on %s, want 1", n, first.ID, lost)
	}
	// The kernel keeps running and keeps its allocation.
	if k, _ := c.agent.Kernel(first.ID); k.State() != "running" {
		t.Fatalf("kernel holding the lost GPU is %s", k.State())
	}
	if u := c.agent.Allocator().Used()["cuda.device"]; !u.Equal(decimal.NewFromInt(1)) {
		t.Fatalf("used cuda.device %s", u)
	}
	// A new kernel gets the remaining GPU, and then nothing.
	second, err := c.create(gpu)
	if err != nil {
		t.Fatal(err)
	}
	if got := heldGPU(t, c, second.ID); got != other {
		t.Fatalf("second kernel got %s, want %s", got, other)
	}
	if _, err := c.create(gpu); !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("third GPU kernel: %v, want insufficient", err)
	}

	// The device comes back: advertised and in hwinfo again, and once its
	// holder is gone, allocatable again.
	writeFile(t, path, testutil.MockTwoGPUs)
	waitFor(t, 10*time.Second, "the heartbeat to advertise two GPUs", func() bool { return gpus() == "2" })
	if h := hwinfo(); !strings.Contains(h, string(lost)) {
		t.Fatalf("hwinfo devices %q after %s returned", h, lost)
	}
	if _, err := c.create(gpu); !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("the returned GPU is still held: %v, want insufficient", err)
	}
	for _, info := range []*KernelInfo{first, second} {
		k, _ := c.agent.Kernel(info.ID)
		if err := c.agent.DestroyKernel(context.Background(), info.ID, k.SessionID, "", false); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the kernels to be cleaned", func() bool { return len(c.agent.Kernels()) == 0 })
	third, err := c.create(func(r *CreationConfig) { r.ResourceSlots["cuda.device"] = "2" })
	if err != nil {
		t.Fatal(err)
	}
	k, _ := c.agent.Kernel(third.ID)
	if got := k.Spec().Allocation.Devices("cuda.device"); len(got) != 2 {
		t.Fatalf("after the return a kernel got %v", got)
	}

	// A broken file keeps the devices (and the loop goes on).
	writeFile(t, path, "slot_name = ")
	if err := c.agent.RescanSlots(context.Background()); err == nil || !errors.Is(err, mock.ErrConfig) {
		t.Fatalf("rescan of a broken file: %v", err)
	}
	if gpus() != "2" {
		t.Fatalf("a broken file changed the advertised GPUs to %s", gpus())
	}
}
