package nvidia

// Checks against a real NVIDIA GPU, run by scripts/gpu-check.sh on a GPU
// machine (BAI_GPU_HOST=1); skipped everywhere else. Results go to
// $BAI_GPU_REPORT/report.json as well as the test log.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/stats"
)

type report struct {
	t      *testing.T
	Checks []map[string]any `json:"checks"`
}

func (r *report) add(name string, pass bool, values map[string]any) {
	r.t.Helper()
	status := "pass"
	if !pass {
		status = "fail"
		r.t.Errorf("%s: %v", name, values)
	} else {
		r.t.Logf("%s: ok %v", name, values)
	}
	r.Checks = append(r.Checks, map[string]any{"check": name, "status": status, "values": values})
}

// record keeps a value that has no pass/fail rule (it depends on the
// machine: PID visibility under gVisor, for one).
func (r *report) record(name string, values map[string]any) {
	r.t.Logf("%s: %v", name, values)
	r.Checks = append(r.Checks, map[string]any{"check": name, "status": "record", "values": values})
}

func (r *report) skip(name, why string) {
	r.t.Logf("%s: skipped (%s)", name, why)
	r.Checks = append(r.Checks, map[string]any{"check": name, "status": "skip", "why": why})
}

func (r *report) write() {
	dir := os.Getenv("BAI_GPU_REPORT")
	if dir == "" {
		return
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	_ = os.WriteFile(filepath.Join(dir, "report.json"), b, 0o644)
}

func smi(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("nvidia-smi", args...).Output()
	if err != nil {
		t.Fatalf("nvidia-smi %v: %v", args, err)
	}
	return string(out)
}

func TestHostGPU(t *testing.T) {
	if os.Getenv("BAI_GPU_HOST") != "1" {
		t.Skip("set BAI_GPU_HOST=1 on a machine with an NVIDIA GPU")
	}
	r := &report{t: t}
	defer r.write()
	lib := NewNVML()
	p, err := New(Options{Lib: lib, Config: map[string]any{"injector": "nvidia"}})
	if err != nil {
		t.Fatalf("NVML: %v", err)
	}
	defer p.Close()
	r.add("A1 library", lib.Path() != "", map[string]any{"path": lib.Path()})

	// A2/A3: enumeration against nvidia-smi.
	rows := strings.Split(strings.TrimSpace(smi(t, "--query-gpu=index,uuid,name,pci.bus_id,memory.total,driver_version,mig.mode.current", "--format=csv,noheader,nounits")), "\n")
	r.add("A2 count", len(rows) == len(p.physical), map[string]any{"nvidia-smi": len(rows), "nvml": len(p.physical)})
	for i, row := range rows {
		f := strings.Split(row, ", ")
		if i >= len(p.physical) || len(f) < 7 {
			continue
		}
		g := p.physical[i].info
		memMiB, _ := strconv.ParseInt(f[4], 10, 64)
		r.add(fmt.Sprintf("A3 gpu%d identity", i), g.UUID == f[1] && g.Model == f[2] && strings.EqualFold(g.HWLocation, f[3]) && g.MemorySize>>20 == memMiB && p.driver == f[5],
			map[string]any{"smi": f, "nvml": map[string]any{"uuid": g.UUID, "name": g.Model, "bus": g.HWLocation, "mib": g.MemorySize >> 20, "driver": p.driver, "sms": g.Processing, "numa": g.NUMANode}, "mig": f[6]})
	}
	hdr := smi(t)
	if m := regexp.MustCompile(`CUDA Version:\s*([0-9.]+)`).FindStringSubmatch(hdr); m != nil {
		r.add("A3 cuda version", m[1] == p.cudaVer, map[string]any{"smi": m[1], "nvml": p.cudaVer})
	}
	for i, g := range p.physical {
		minor, _ := g.dev.Minor()
		st, err := os.Stat(fmt.Sprintf("/dev/nvidia%d", minor))
		r.add(fmt.Sprintf("A5 gpu%d device node", i), err == nil && st.Mode()&os.ModeCharDevice != 0, map[string]any{"minor": minor, "error": fmt.Sprint(err)})
		gi := g.info
		r.add(fmt.Sprintf("C1 gpu%d SMs", i), gi.Processing > 0, map[string]any{"sms": gi.Processing})
		if ts := os.Getenv("BAI_TORCH_SMS"); ts != "" {
			n, _ := strconv.Atoi(ts)
			r.add(fmt.Sprintf("C1 gpu%d SMs = torch", i), n == gi.Processing, map[string]any{"nvml": gi.Processing, "torch": n})
		}
		if tm := os.Getenv("BAI_TORCH_TOTAL_MEMORY"); tm != "" {
			n, _ := strconv.ParseInt(tm, 10, 64)
			r.add(fmt.Sprintf("C4 gpu%d memory: NVML total vs torch (cudart, what cuda_open reports)", i), n > 0 && n <= gi.MemorySize,
				map[string]any{"nvml_total": gi.MemorySize, "torch_total": n, "difference_mib": (gi.MemorySize - n) >> 20})
		}
	}

	// B1: idle metrics.
	ms, err := p.NodeMeasures(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]stats.NodeMeasure{}
	for _, m := range ms {
		byKey[m.Def.Key] = m
	}
	for id, v := range byKey["cuda_mem"].PerDevice {
		r.add("B1 idle memory "+id, !v.Value.IsNegative() && v.Value.LessThanOrEqual(*v.Capacity), map[string]any{"used": v.Value.String(), "total": v.Capacity.String()})
	}
	for id, v := range byKey["cuda_util"].PerDevice {
		r.add("B1 idle util "+id, v.Value.IntPart() >= 0 && v.Value.IntPart() <= 100, map[string]any{"util": v.Value.String()})
	}
	for id, v := range byKey["cuda_power"].PerDevice {
		r.add("B1 idle power "+id, v.Value.IsPositive() && v.Value.LessThanOrEqual(*v.Capacity), map[string]any{"watts": v.Value.String(), "limit": v.Capacity.String()})
	}
	for id, v := range byKey["cuda_temperature"].PerDevice {
		r.add("B1 idle temperature "+id, v.Value.IntPart() >= 15 && v.Value.IntPart() <= 95, map[string]any{"celsius": v.Value.String()})
	}

	// B2: under load (the script starts a torch job and tells us its PID).
	if pid := os.Getenv("BAI_GPU_LOAD_PID"); pid != "" {
		// The baseline is what was in use before the load started (the
		// script reads it); by now the load may have allocated already.
		idle := byKey["cuda_mem"].PerDevice["0"].Value
		if mib, err := strconv.ParseInt(os.Getenv("BAI_GPU_IDLE_USED_MIB"), 10, 64); err == nil {
			idle = decimal.NewFromInt(mib << 20)
		}
		var peakMem, peakUtil int64
		var smiMem, smiUtil []string
		deadline := time.Now().Add(12 * time.Second)
		for time.Now().Before(deadline) {
			ms, err := p.NodeMeasures(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				v := m.PerDevice["0"].Value.IntPart()
				if m.Def.Key == "cuda_mem" && v > peakMem {
					peakMem = v
				}
				if m.Def.Key == "cuda_util" && v > peakUtil {
					peakUtil = v
				}
			}
			if out, err := exec.Command("nvidia-smi", "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits", "-i", "0").Output(); err == nil {
				f := strings.Split(strings.TrimSpace(string(out)), ", ")
				if len(f) == 2 {
					smiUtil, smiMem = append(smiUtil, f[0]), append(smiMem, f[1])
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
		r.add("B2 memory rises under load", peakMem-idle.IntPart() >= 4<<30, map[string]any{"idle": idle.String(), "peak": peakMem, "smi_used_mib": smiMem})
		r.add("B2 utilisation under load", peakUtil >= 50, map[string]any{"peak_util": peakUtil, "smi_util": smiUtil})
		procs, err := p.physical[0].dev.ProcessMemory()
		want, _ := strconv.Atoi(pid)
		if err != nil {
			r.skip("B2 process attribution", err.Error())
		} else {
			r.record("B2 process attribution", map[string]any{"load_pid": want, "nvml_processes": procs, "pid_visible": procs[want] > 0})
		}
	} else {
		r.skip("B2 load", "no BAI_GPU_LOAD_PID")
	}

	// B4: latency of one full sample.
	var lat []time.Duration
	for i := 0; i < 200; i++ {
		t0 := time.Now()
		if _, err := p.NodeMeasures(context.Background()); err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.add("B4 sample latency", lat[198] < 50*time.Millisecond, map[string]any{"p50": lat[100].String(), "p99": lat[198].String(), "gpus": len(p.physical)})

	// C5/D: what a kernel holding GPU 0 gets, for each injector.
	alloc := resource.Allocation{"cuda.device": {"0": decimal.NewFromInt(1)}}
	att := p.AttachedDevices(alloc)
	env := device.GPUEnv("cuda", att)
	r.add("C5 GPU env", env["GPU_MODEL_NAME"] == p.physical[0].info.Model && env["GPU_COUNT"] == "1", map[string]any{"env": env, "attached": att, "resource.txt": p.ResourceData(alloc)})
	cdiDir := t.TempDir()
	spec := fmt.Sprintf("cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n- name: \"0\"\n- name: %s\n", p.physical[0].info.UUID)
	if err := os.WriteFile(filepath.Join(cdiDir, "nvidia.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, inj := range []string{"nvidia", "legacy", "cdi"} {
		q, err := New(Options{Lib: NewNVML(), Config: map[string]any{"injector": inj}, CDIDirs: []string{cdiDir}})
		if err != nil {
			t.Fatal(err)
		}
		res := q.Reserve(alloc)
		b, _ := json.Marshal(res)
		ok := len(res.DeviceRequests) == 1 || res.Runtime == "nvidia"
		if inj == "cdi" {
			ok = ok && res.DeviceRequests[0].DeviceIDs[0] == "nvidia.com/gpu="+p.physical[0].info.UUID
		}
		r.add("D "+inj+" container arguments", ok, map[string]any{"reservation": string(b)})
		_ = q.Close()
	}
	// D7: what this host would choose by itself.
	inj, why := DetectInjector(nil, CDIDeviceNames(DefaultCDIDirs))
	if _, err := exec.LookPath("docker"); err == nil {
		r.skip("D7 auto-detection", "docker present; run the agent for the real choice")
	} else {
		r.add("D7 auto-detection without an engine", inj == InjectNone, map[string]any{"injector": inj, "why": why})
	}
}

// BenchmarkHostSample measures one full NodeMeasures sample (memory,
// utilisation, power, temperature of every GPU, folded into measures)
// against the same four go-nvml calls made directly, on a real GPU
// (BAI_GPU_HOST=1; skipped elsewhere).
func BenchmarkHostSample(b *testing.B) {
	if os.Getenv("BAI_GPU_HOST") != "1" {
		b.Skip("set BAI_GPU_HOST=1 on a machine with an NVIDIA GPU")
	}
	lib := NewNVML()
	p, err := New(Options{Lib: lib, Config: map[string]any{"injector": "none"}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	b.Run("raw-nvml", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			for _, g := range p.physical {
				d := g.dev.(nvDev).d
				d.GetMemoryInfo()
				d.GetUtilizationRates()
				d.GetPowerUsage()
				d.GetTemperature(0)
			}
		}
	})
	b.Run("node-measures", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := p.NodeMeasures(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
