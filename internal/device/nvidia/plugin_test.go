package nvidia

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
)

func d(s string) decimal.Decimal { return decimal.RequireFromString(s) }

var dockerWithNvidia = &backend.EngineInfo{Name: "Docker Engine", ServerVersion: "26.1.5", Runtimes: []string{"io.containerd.runc.v2", "nvidia", "runc"}}

// sysroot builds /sys/bus/pci/devices/<bdf>/numa_node for the fakes.
func sysroot(t *testing.T, numa map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for bdf, n := range numa {
		dir := filepath.Join(root, "sys/bus/pci/devices", bdf)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "numa_node"), []byte(n+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func newPlugin(t *testing.T, lib *fakeLib, o Options) *Plugin {
	t.Helper()
	o.Lib = lib
	if o.Engine == nil {
		o.Engine = dockerWithNvidia
	}
	if o.CDIDirs == nil {
		o.CDIDirs = []string{t.TempDir()}
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func allocator(t *testing.T, p *Plugin) *resource.Allocator {
	t.Helper()
	maps, err := p.AllocMaps(resource.Interleaved)
	if err != nil {
		t.Fatal(err)
	}
	types := map[resource.SlotName]resource.SlotType{}
	for _, s := range p.Slots() {
		types[s.Name] = s.Type
	}
	a := resource.NewAllocator(maps, types, p.Available(), []string{"cuda", "cpu", "mem"})
	a.SetExclusive("cuda", p.ExclusiveSlots())
	return a
}

func TestEnumerateAndWire(t *testing.T) {
	lib := &fakeLib{devs: []*fakeDev{h100(0), h100(1)}}
	p := newPlugin(t, lib, Options{SysRoot: sysroot(t, map[string]string{"0000:1b:00.0": "0", "0000:1c:00.0": "1"})})
	devs := p.Devices()
	if len(devs) != 2 {
		t.Fatalf("devices %v", devs)
	}
	want := device.DeviceInfo{ID: "1", Slot: "cuda.device", Model: "NVIDIA H100 80GB HBM3", UUID: "GPU-00000001-1111-2222-3333-444444444444", HWLocation: "00000000:1C:00.0", MemorySize: 85520809984, Processing: 132, NUMANode: 1}
	if diff := cmp.Diff(want, devs[1]); diff != "" {
		t.Fatalf("device 1 (-want +got):\n%s", diff)
	}
	if !p.Available()["cuda.device"].Equal(d("2")) {
		t.Fatalf("available %v", p.Available())
	}
	alloc, err := allocator(t, p).Allocate(resource.Slots{"cuda.device": d("1")})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"CUDA_GLOBAL_DEVICE_IDS": "0:0", "CUDA_RESOURCE_VIRTUALIZED": "0"}, p.ResourceData(alloc)); diff != "" {
		t.Errorf("resource data (-want +got):\n%s", diff)
	}
	att := p.AttachedDevices(alloc)
	if diff := cmp.Diff([]device.AttachedDevice{{DeviceID: "0", ModelName: "NVIDIA H100 80GB HBM3", Data: map[string]any{"smp": int64(132), "mem": int64(85520809984)}}}, att); diff != "" {
		t.Errorf("attached (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{
		"GPU_TYPE": "cuda", "GPU_MODEL_NAME": "NVIDIA H100 80GB HBM3", "GPU_CONFIG": "0:79.65g", "TF_GPU_MEMORY_ALLOC": "0:81559", "GPU_COUNT": "1", "N_GPUS": "1",
	}, device.GPUEnv("cuda", att)); diff != "" {
		t.Errorf("GPU env (-want +got):\n%s", diff)
	}
	if ei := p.ExtraInfo(); ei["cuda_support"] != true || ei["nvidia_version"] != "580.159.04" || ei["cuda_version"] != "13.0" {
		t.Errorf("extra info %v", ei)
	}
	h, ok := p.NodeHWInfo()
	if !ok || h.Status != "healthy" || !strings.Contains(h.Metadata["gpu1"], "NVIDIA H100 80GB HBM3") || h.Metadata["injector"] != "nvidia" {
		t.Errorf("hwinfo %+v", h)
	}
	if p.Close() != nil || !lib.shut {
		t.Error("Close did not shut NVML down")
	}
}

// Golden container arguments for each way GPUs reach a container.
func TestInjectorGoldens(t *testing.T) {
	cdiDir := t.TempDir()
	spec := `cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
- name: GPU-00000000-1111-2222-3333-444444444444
- name: all
`
	if err := os.WriteFile(filepath.Join(cdiDir, "nvidia.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	alloc := resource.Allocation{"cuda.device": {"0": d("1")}}
	for _, tc := range []struct {
		injector string
		want     device.Reservation
	}{
		{"nvidia", device.Reservation{DeviceRequests: []device.DeviceRequest{{Driver: "nvidia", DeviceIDs: []string{"0"}, Capabilities: [][]string{{"utility", "compute", "video", "graphics", "display"}}}}}},
		{"legacy", device.Reservation{Runtime: "nvidia", EnvList: []string{"NVIDIA_DRIVER_CAPABILITIES=all", "NVIDIA_VISIBLE_DEVICES=0"}}},
		{"cdi", device.Reservation{DeviceRequests: []device.DeviceRequest{{Driver: "cdi", DeviceIDs: []string{"nvidia.com/gpu=GPU-00000000-1111-2222-3333-444444444444"}}}}},
		{"none", device.Reservation{}},
	} {
		t.Run(tc.injector, func(t *testing.T) {
			p := newPlugin(t, &fakeLib{devs: []*fakeDev{h100(0)}}, Options{Config: map[string]any{"injector": tc.injector}, CDIDirs: []string{cdiDir}})
			if diff := cmp.Diff(tc.want, p.Reserve(alloc)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if tc.injector == "none" {
				if !p.Available()["cuda.device"].IsZero() || p.ExtraInfo()["cuda_support"] != false {
					t.Errorf("injector none still offers GPUs: %v %v", p.Available(), p.ExtraInfo())
				}
				if h, _ := p.NodeHWInfo(); h.Status != "degraded" {
					t.Errorf("hwinfo status %s", h.Status)
				}
			}
			if got := p.Reserve(resource.Allocation{"cuda.device": {}}); !cmp.Equal(got, device.Reservation{}) {
				t.Errorf("a kernel without GPUs got %+v", got)
			}
		})
	}
	// A GPU the CDI spec does not name is not offered at all.
	p := newPlugin(t, &fakeLib{devs: []*fakeDev{h100(0), h100(5)}}, Options{Config: map[string]any{"injector": "cdi"}, CDIDirs: []string{cdiDir}})
	if got := p.Available()["cuda.device"]; !got.Equal(d("1")) {
		t.Errorf("with a CDI spec naming one GPU, offered %s", got)
	}
}

func TestDetectInjector(t *testing.T) {
	gpuSpec := map[string]bool{"0": true}
	for _, tc := range []struct {
		name string
		info *backend.EngineInfo
		cdi  map[string]bool
		want Injector
	}{
		{"no engine", nil, nil, InjectNone},
		{"docker with the nvidia runtime", dockerWithNvidia, nil, InjectDriver},
		{"old docker", &backend.EngineInfo{Name: "Docker Engine", ServerVersion: "18.09.7", Runtimes: []string{"nvidia", "runc"}}, nil, InjectLegacy},
		{"docker with CDI", &backend.EngineInfo{Name: "Docker Engine", ServerVersion: "28.0.1", Runtimes: []string{"runc"}, CDISpecDirs: []string{"/etc/cdi"}}, gpuSpec, InjectCDI},
		{"docker with CDI dirs but no spec", &backend.EngineInfo{Name: "Docker Engine", ServerVersion: "28.0.1", Runtimes: []string{"runc"}, CDISpecDirs: []string{"/etc/cdi"}}, nil, InjectNone},
		{"plain docker", &backend.EngineInfo{Name: "Docker Engine", ServerVersion: "20.10.24+dfsg1", Runtimes: []string{"io.containerd.runc.v2", "runc"}}, nil, InjectNone},
		{"podman 5.4 with CDI", &backend.EngineInfo{Name: "Podman Engine", ServerVersion: "5.4.0"}, gpuSpec, InjectCDI},
		{"podman 4", &backend.EngineInfo{Name: "Podman Engine", ServerVersion: "4.9.3"}, gpuSpec, InjectNone},
	} {
		if got, why := DetectInjector(tc.info, tc.cdi); got != tc.want || why == "" {
			t.Errorf("%s: %s (%q), want %s", tc.name, got, why, tc.want)
		}
	}
}

func TestDeviceMask(t *testing.T) {
	for _, mask := range []string{"1", "GPU-00000001-1111-2222-3333-444444444444", "00000001-1111-2222-3333-444444444444"} {
		p := newPlugin(t, &fakeLib{devs: []*fakeDev{h100(0), h100(1)}}, Options{Config: map[string]any{"device_mask": mask}})
		devs := p.Devices()
		if len(devs) != 1 || devs[0].ID != "0" {
			t.Errorf("mask %q: devices %v", mask, devs)
		}
		ms, _ := p.NodeMeasures(context.Background())
		if _, ok := ms[0].PerDevice["1"]; ok {
			t.Errorf("mask %q: masked GPU still measured", mask)
		}
	}
}

func TestMIG(t *testing.T) {
	g := h100(0)
	g.migs = []MIGDev{
		migSlice("MIG-aaaa", 1, 1, 9984, 16),
		migSlice("MIG-bbbb", 1, 1, 9984, 16),
		migSlice("MIG-cccc", 3, 3, 40192, 60),
	}
	p := newPlugin(t, &fakeLib{devs: []*fakeDev{g, h100(1)}}, Options{})
	av := p.Available()
	for slot, want := range map[resource.SlotName]string{"cuda.device": "1", "cuda.device:1g.10gb-mig": "2", "cuda.device:3g.40gb-mig": "1"} {
		if !av[slot].Equal(d(want)) {
			t.Errorf("%s = %s, want %s (all %v)", slot, av[slot], want, av)
		}
	}
	a := allocator(t, p)
	if _, err := a.Allocate(resource.Slots{"cuda.device": d("1"), "cuda.device:1g.10gb-mig": d("1")}); !errors.Is(err, resource.ErrInvalidCombination) {
		t.Errorf("GPU + MIG: %v", err)
	}
	alloc, err := a.Allocate(resource.Slots{"cuda.device:3g.40gb-mig": d("1")})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Reserve(alloc)
	if len(r.DeviceRequests) != 1 || r.DeviceRequests[0].DeviceIDs[0] != "MIG-cccc" {
		t.Errorf("MIG reservation %+v", r)
	}
	// MIG instances have no utilisation: memory only, nothing fails.
	cm, err := p.ContainerMeasures(context.Background(), []device.KernelDevices{{KernelID: "k", Allocation: alloc}})
	if err != nil || cm[0].PerKernel["k"].Capacity.String() != decimal.NewFromInt(40192<<20).String() {
		t.Errorf("MIG container measures %+v %v", cm, err)
	}
	if _, ok := cm[1].PerKernel["k"]; ok {
		t.Error("MIG utilisation reported though NVML does not support it")
	}
}

func TestFractionalShares(t *testing.T) {
	p := newPlugin(t, &fakeLib{devs: []*fakeDev{h100(0)}}, Options{Config: map[string]any{"allocation_mode": "fractional"}})
	// min(79.65 GiB / 2 GiB, 132 / 8) = 16.5
	if got := p.Available()["cuda.shares"]; !got.Equal(d("16.5")) {
		t.Fatalf("cuda.shares %s", got)
	}
	a := allocator(t, p)
	if _, err := a.Allocate(resource.Slots{"cuda.shares": d("0.05")}); !errors.Is(err, resource.ErrNotMultipleOfQuantum) {
		t.Errorf("below the quantum: %v", err)
	}
	k1, err := a.Allocate(resource.Slots{"cuda.shares": d("8")})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := a.Allocate(resource.Slots{"cuda.shares": d("8.5")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Allocate(resource.Slots{"cuda.shares": d("0.1")}); !errors.Is(err, resource.ErrInsufficient) {
		t.Fatalf("shares beyond 16.5: %v", err)
	}
	// Both kernels are given the same GPU; the memory fraction travels in
	// the environment and resource.txt.
	r1, r2 := p.Reserve(k1), p.Reserve(k2)
	if r1.DeviceRequests[0].DeviceIDs[0] != "0" || r2.DeviceRequests[0].DeviceIDs[0] != "0" {
		t.Fatalf("shares not on GPU 0: %+v %+v", r1, r2)
	}
	if r1.EnvList[0] != "XLA_PYTHON_CLIENT_MEM_FRACTION=0.201" {
		t.Errorf("kernel 1 env %v (8 shares x 2 GiB of 79.65 GiB)", r1.EnvList)
	}
	rd := p.ResourceData(k1)
	if rd["CUDA_RESOURCE_VIRTUALIZED"] != "1" || rd["CUDA_MEMORY_LIMITS"] != "0:17179869184" || rd["CUDA_PROCESSOR_LIMITS"] != "0:64" {
		t.Errorf("resource data %v", rd)
	}
}

func TestMeasuresAndLostGPU(t *testing.T) {
	g0, g1 := h100(0), h100(1)
	g1.utilErr = ErrNotSupported
	p := newPlugin(t, &fakeLib{devs: []*fakeDev{g0, g1}}, Options{})
	ms, err := p.NodeMeasures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]int{}
	for i, m := range ms {
		byKey[m.Def.Key] = i
	}
	mem, util := ms[byKey["cuda_mem"]], ms[byKey["cuda_util"]]
	if !mem.Node.Value.Equal(d("2147483648")) || !mem.Node.Capacity.Equal(d("171041619968")) {
		t.Errorf("node cuda_mem %v / %v", mem.Node.Value, mem.Node.Capacity)
	}
	if _, ok := util.PerDevice["1"]; ok || !util.Node.Capacity.Equal(d("200")) || !util.Node.Value.Equal(d("10")) {
		t.Errorf("cuda_util %+v", util)
	}
	if pw := ms[byKey["cuda_power"]].PerDevice["0"]; !pw.Value.Equal(d("70")) || !pw.Capacity.Equal(d("700")) {
		t.Errorf("power %+v", pw)
	}
	// The GPU falls off the bus: its series go, hwinfo says why, the other
	// GPU is still measured.
	g1.mu.Lock()
	g1.lost = errors.New("GPU is lost")
	g1.mu.Unlock()
	ms, err = p.NodeMeasures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ms[0].PerDevice["1"]; ok || len(ms[0].PerDevice) != 1 {
		t.Errorf("lost GPU still measured: %+v", ms[0].PerDevice)
	}
	if h, _ := p.NodeHWInfo(); h.Status != "degraded" || h.StatusInfo == nil || !strings.Contains(*h.StatusInfo, "GPU is lost") {
		t.Errorf("hwinfo after loss %+v", h)
	}
}

func TestUnavailable(t *testing.T) {
	_, err := New(Options{Lib: &fakeLib{initErr: ErrUnavailable}})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("%v", err)
	}
	// The real library at a path that does not exist: go-nvml's dlopen
	// fails and says so; nothing panics.
	_, err = New(Options{Lib: NewNVML("/nonexistent/libnvidia-ml.so.1")})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "/nonexistent/libnvidia-ml.so.1") {
		t.Fatalf("real NVML at a bad path: %v", err)
	}
	u := Unavailable("no NVIDIA driver")
	if !u.Available()["cuda.device"].IsZero() || u.ExtraInfo()["cuda_support"] != false {
		t.Errorf("unavailable plugin offers %v %v", u.Available(), u.ExtraInfo())
	}
	if h, _ := u.NodeHWInfo(); h.Status != "unavailable" || *h.StatusInfo != "no NVIDIA driver" {
		t.Errorf("hwinfo %+v", h)
	}
	if ms, err := u.NodeMeasures(context.Background()); err != nil || len(ms) != 2 || !ms[0].Node.Value.IsZero() {
		t.Errorf("unavailable measures %+v %v", ms, err)
	}
	if _, err := New(Options{Lib: &fakeLib{}, Config: map[string]any{"injector": "magic"}}); !errors.Is(err, device.ErrPluginConfig) || !strings.Contains(err.Error(), "cuda/injector") {
		t.Errorf("bad injector: %v", err)
	}
}
