package mock

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

const (
	u1 = "c59395cd-ac91-4cd3-a1b0-3d2568aa2d01"
	u2 = "c59395cd-ac91-4cd3-a1b0-3d2568aa2d02"
)

func load(t *testing.T, file string, etcd map[string]any) (*Plugin, *resource.Allocator) {
	t.Helper()
	cfg, err := LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := device.ParseShareConfig("mock", etcd)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(cfg, pc)
	if err != nil {
		t.Fatal(err)
	}
	maps, err := p.AllocMaps(resource.Interleaved)
	if err != nil {
		t.Fatal(err)
	}
	types := map[resource.SlotName]resource.SlotType{}
	for _, s := range p.Slots() {
		types[s.Name] = s.Type
	}
	a := resource.NewAllocator(maps, types, p.Available(), []string{"cuda", "rocm", "cpu", "mem"})
	a.SetExclusive(p.Key(), p.ExclusiveSlots())
	return p, a
}

const sampleConfig = "../../../configs/accelerator/mock-accelerator.toml"

func envMap(lines []string) map[string]string {
	out := map[string]string{}
	for _, l := range lines {
		k, v, _ := strings.Cut(l, "=")
		out[k] = v
	}
	return out
}

func TestDiscrete(t *testing.T) {
	p, a := load(t, sampleConfig, nil)
	if got := p.Available()["cuda.device"]; !got.Equal(d("4")) {
		t.Fatalf("cuda.device = %s, want 4", got)
	}
	alloc, err := a.Allocate(resource.Slots{"cuda.device": d("2")})
	if err != nil {
		t.Fatal(err)
	}
	// EVENLY over two NUMA nodes, INTERLEAVED: one GPU from each node.
	if ids := alloc.Devices("cuda.device"); len(ids) != 2 || ids[0] != u1 || ids[1] != u2 {
		t.Fatalf("allocated %v", ids)
	}
	spec := resource.Spec{Slots: resource.Slots{"cuda.device": d("2")}, Allocation: alloc, Extra: p.ResourceData(alloc)}
	txt := string(spec.Marshal(map[resource.SlotName]resource.SlotType{"cuda.device": resource.SlotCount}))
	for _, want := range []string{
		"CUDA.DEVICE_SHARES=" + u1 + ":1," + u2 + ":1\n",
		"CUDA_GLOBAL_DEVICE_IDS=0:" + u1 + ",1:" + u2 + "\n",
		"CUDA_RESOURCE_VIRTUALIZED=0\n",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("resource.txt lacks %q:\n%s", want, txt)
		}
	}
	env := envMap(p.Reserve(alloc).EnvList)
	if diff := cmp.Diff(map[string]string{
		"TF_MIN_GPU_MULTIPROCESSOR_COUNT": "4", "BACKENDAI_MOCK_CUDA_DEVICES": u1 + "," + u2, "BACKENDAI_MOCK_CUDA_DEVICE_COUNT": "2",
	}, env); diff != "" {
		t.Errorf("env (-want +got):\n%s", diff)
	}
	att := p.AttachedDevices(alloc)
	gpu := device.GPUEnv("cuda", att)
	if diff := cmp.Diff(map[string]string{
		"GPU_TYPE": "cuda", "GPU_MODEL_NAME": "CUDA GPU", "GPU_CONFIG": "0:40g,1:40g", "TF_GPU_MEMORY_ALLOC": "0:40960,1:40960",
		"GPU_COUNT": "2", "N_GPUS": "2",
	}, gpu); diff != "" {
		t.Errorf("GPU env (-want +got):\n%s", diff)
	}
	if att[0].Data["mem"] != int64(42949672960) || att[0].Data["smp"] != int64(108) {
		t.Errorf("attached data %v", att[0].Data)
	}
	// Restart: the allocation re-applied from resource.txt blocks the same
	// devices (no double allocation).
	back, err := resource.ParseSpec([]byte(txt), map[resource.SlotName]resource.SlotType{"cuda.device": resource.SlotCount})
	if err != nil {
		t.Fatal(err)
	}
	_, a2 := load(t, sampleConfig, nil)
	if over, err := a2.Restore(back.Allocation); err != nil || over {
		t.Fatalf("restore: %v over=%v", err, over)
	}
	if _, err := a2.Allocate(resource.Slots{"cuda.device": d("3")}); !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("3 more GPUs after restoring 2 of 4: %v", err)
	}
	if md := p.Metadata(); md["slot_name"] != "cuda.device" || md["display_unit"] != "GPU" {
		t.Errorf("metadata %v", md)
	}
	if ei := p.ExtraInfo(); ei["cuda_support"] != true || ei["nvidia_driver"] != "450.0.0" {
		t.Errorf("extra info %v", ei)
	}
}

func TestFractional(t *testing.T) {
	p, a := load(t, sampleConfig, map[string]any{"allocation_mode": "fractional"})
	if got := p.Available()["cuda.shares"]; !got.Equal(d("54")) {
		t.Fatalf("cuda.shares = %s, want 54 (4 x min(40G/2G, 108/8))", got)
	}
	alloc, err := a.Allocate(resource.Slots{"cuda.shares": d("0.5")})
	if err != nil {
		t.Fatal(err)
	}
	ids := alloc.Devices("cuda.shares")
	if len(ids) != 1 {
		t.Fatalf("0.5 share spread over %v", ids)
	}
	rd := p.ResourceData(alloc)
	id := string(ids[0])
	if diff := cmp.Diff(map[string]string{
		"CUDA_GLOBAL_DEVICE_IDS": "0:" + id, "CUDA_RESOURCE_VIRTUALIZED": "1", "CUDA_MEMORY_LIMITS": id + ":1073741824",
		"CUDA_PROCESSOR_LIMITS": id + ":4", "CUDA_RESERVED_MEMORY": "67108864",
	}, rd); diff != "" {
		t.Errorf("resource data (-want +got):\n%s", diff)
	}
	if _, err := a.Allocate(resource.Slots{"cuda.shares": d("0.05")}); !errors.Is(err, resource.ErrNotMultipleOfQuantum) {
		t.Fatalf("0.05 < quantum 0.1: %v", err)
	}
	if md := p.Metadata(); md["slot_name"] != "cuda.shares" || md["display_unit"] != "fGPU" {
		t.Errorf("metadata %v", md)
	}
	// Shares add up: 13.5 per device, so 13.5 fits one device's rest only
	// after the 0.5 went elsewhere.
	if _, err := a.Allocate(resource.Slots{"cuda.shares": d("53.5")}); err != nil {
		t.Fatalf("the remaining 53.5 shares: %v", err)
	}
	if _, err := a.Allocate(resource.Slots{"cuda.shares": d("0.1")}); !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("over 54 shares: %v", err)
	}
}

func TestMIG(t *testing.T) {
	p, a := load(t, "testdata/mig.toml", nil)
	av := p.Available()
	for slot, want := range map[resource.SlotName]string{"cuda.device": "2", "cuda.device:20g-mig": "1", "cuda.device:10g-mig": "2", "cuda.device:5g-mig": "4"} {
		if !av[slot].Equal(d(want)) {
			t.Errorf("%s = %s, want %s", slot, av[slot], want)
		}
	}
	if _, err := a.Allocate(resource.Slots{"cuda.device:10g-mig": d("2")}); !errors.Is(err, resource.ErrInvalidArgument) {
		t.Errorf("2 of a unique slot: %v", err)
	}
	if _, err := a.Allocate(resource.Slots{"cuda.device": d("1"), "cuda.device:5g-mig": d("1")}); !errors.Is(err, resource.ErrInvalidCombination) {
		t.Errorf("whole GPU + MIG slice: %v", err)
	}
	alloc, err := a.Allocate(resource.Slots{"cuda.device:10g-mig": d("1")})
	if err != nil {
		t.Fatal(err)
	}
	ids := alloc.Devices("cuda.device:10g-mig")
	if len(ids) != 1 || !strings.HasPrefix(string(ids[0]), "MIG-m3/") && !strings.HasPrefix(string(ids[0]), "MIG-m4/") {
		t.Fatalf("MIG id %v", ids)
	}
	if md := p.Metadata(); md["slot_name"] != "cuda.*-mig" {
		t.Errorf("metadata slot_name %v, want cuda.*-mig", md["slot_name"])
	}
	ms, err := p.NodeMeasures(context.Background())
	if err != nil || len(ms) != 4 || ms[0].Def.Key != "cuda_mem" {
		t.Fatalf("measures %v %v", ms, err)
	}
	// fixed stats: half of each device's memory.
	if got := ms[0].PerDevice["m0"].Value; !got.Equal(d("21474836480")) {
		t.Errorf("fixed cuda_mem of m0 = %s", got)
	}
}

func TestROCmMock(t *testing.T) {
	p, a := load(t, "testdata/rocm.toml", nil)
	if p.Key() != "rocm" || !p.Available()["rocm.device"].Equal(d("4")) {
		t.Fatalf("key %s available %v", p.Key(), p.Available())
	}
	alloc, err := a.Allocate(resource.Slots{"rocm.device": d("1")})
	if err != nil {
		t.Fatal(err)
	}
	if r := p.Reserve(alloc); len(r.EnvList) != 0 || len(p.ResourceData(alloc)) != 0 {
		t.Errorf("a rocm mock sets no environment and no resource data: %+v %v", r, p.ResourceData(alloc))
	}
	if att := p.AttachedDevices(alloc); len(att) != 1 || att[0].ModelName != "AMD MI250" {
		t.Errorf("attached %v", att)
	}
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ body, key string }{
		{`devices = []`, "slot_name"},
		{`slot_name = "cuda"
devices = [{ mother_uuid = "a", model_name = "x", subproc_count = 1, memory_size = "1G" }]`, "devices[0].numa_node"},
		{`slot_name = "cuda"
devices = [{ mother_uuid = "a", model_name = "x", numa_node = 0, subproc_count = 1, memory_size = "lots" }]`, "devices[0].memory_size"},
		{`slot_name = "cuda"
devices = [{ mother_uuid = "a:b", model_name = "x", numa_node = 0, subproc_count = 1, memory_size = "1G" }]`, "devices[0].mother_uuid"},
		{`slot_name = "cuda"
stats = "sometimes"`, "stats"},
		{`slot_name = "cuda.x"`, "slot_name"},
	} {
		f := filepath.Join(dir, "m.toml")
		if err := os.WriteFile(f, []byte(tc.body), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := LoadConfig(f)
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.key+":") {
			t.Errorf("%q: err %v, want one naming %s", tc.body, err, tc.key)
		}
	}
	for _, tc := range []struct {
		m   map[string]any
		key string
	}{
		{map[string]any{"allocation_mode": "shared"}, "allocation_mode"},
		{map[string]any{"unit_mem": "100m"}, "unit_mem"},
		{map[string]any{"unit_proc": "1"}, "unit_proc"},
		{map[string]any{"quantum_size": "0.0001"}, "quantum_size"},
	} {
		if _, err := device.ParseShareConfig("mock", tc.m); !errors.Is(err, device.ErrPluginConfig) || !strings.Contains(err.Error(), "config/plugins/accelerator/mock/"+tc.key) {
			t.Errorf("%v: %v", tc.m, err)
		}
	}
	// A missing format table fails at start, naming it.
	cfg, err := LoadConfig("testdata/rocm.toml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := New(cfg, device.ShareConfig{Fractional: true, UnitMem: 2 << 30, UnitProc: 8, Quantum: d("0.1")}); err == nil || !strings.Contains(err.Error(), "formats.shares") {
		t.Errorf("fractional without [formats.shares]: %v", err)
	}
}
