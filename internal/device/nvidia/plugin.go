package nvidia

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/backend"
	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/stats"
)

// Version is the CUDA plugin's version.
const Version = "bai-agent-cuda/1"

// Capabilities are the NVIDIA driver capabilities a kernel asks for
// (cuda_open's list).
var Capabilities = []string{"utility", "compute", "video", "graphics", "display"}

// Options configure New.
type Options struct {
	Lib Lib
	// Engine is what the container engine said about itself (nil: it did
	// not answer).
	Engine *backend.EngineInfo
	// Config is config/plugins/accelerator/cuda from etcd: device_mask,
	// injector (auto, nvidia, legacy, cdi, none), allocation_mode and the
	// share keys of the mock (unit_mem, unit_proc, quantum_size,
	// reserved_memory).
	Config map[string]any
	// CDIDirs are searched for nvidia.com/gpu specs (default: the
	// engine's CDISpecDirs, else DefaultCDIDirs).
	CDIDirs []string
	// SysRoot prefixes /sys for NUMA lookups (tests).
	SysRoot string
	Log     *slog.Logger
}

// gpu is one allocatable unit (a whole GPU or a MIG instance) or, for MIG
// parents, a measured-only GPU.
type gpu struct {
	info    device.DeviceInfo
	dev     Dev
	index   int    // NVML index of the (parent) GPU
	cdiName string // name in the CDI spec ("" when not using CDI)
	mig     bool
}

// Plugin is the CUDA compute plugin.
type Plugin struct {
	log      *slog.Logger
	lib      Lib
	reason   string // why NVML is unusable ("" when it works)
	injector Injector
	why      string // why this injector
	sc       device.ShareConfig
	driver   string
	cudaVer  string
	physical []gpu // every unmasked GPU, measured
	units    []gpu // what is allocated: whole GPUs, or MIG instances

	mu   sync.Mutex
	lost map[resource.DeviceID]string // device -> last NVML error
}

// Unavailable is a plugin for a host whose NVML does not work: it offers
// cuda.device = 0 and says why in hwinfo.
func Unavailable(reason string) *Plugin {
	return &Plugin{log: slog.Default(), reason: reason, injector: InjectNone, sc: device.ShareConfig{UnitMem: 2 << 30, UnitProc: 8, Quantum: decimal.RequireFromString("0.1")}, lost: map[resource.DeviceID]string{}}
}

// New initialises NVML through o.Lib and enumerates the GPUs. An NVML
// that does not initialise gives an error wrapping ErrUnavailable; a bad
// etcd setting gives device.ErrPluginConfig naming the key.
func New(o Options) (*Plugin, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	sc, err := device.ParseShareConfig("cuda", o.Config)
	if err != nil {
		return nil, err
	}
	want := "auto"
	if v, ok := o.Config["injector"].(string); ok && strings.TrimSpace(v) != "" {
		want = strings.TrimSpace(v)
	}
	switch want {
	case "auto", string(InjectDriver), string(InjectLegacy), string(InjectCDI), string(InjectNone):
	default:
		return nil, fmt.Errorf("%w: config/plugins/accelerator/cuda/injector: %q is not one of auto, nvidia, legacy, cdi, none", device.ErrPluginConfig, want)
	}
	if err := o.Lib.Init(); err != nil {
		return nil, err
	}
	p := &Plugin{log: o.Log, lib: o.Lib, sc: sc, lost: map[resource.DeviceID]string{}}
	if v, err := o.Lib.DriverVersion(); err == nil {
		p.driver = v
	}
	if v, err := o.Lib.CudaDriverVersion(); err == nil {
		p.cudaVer = fmt.Sprintf("%d.%d", v/1000, (v%1000)/10)
	}
	dirs := o.CDIDirs
	if dirs == nil && o.Engine != nil && len(o.Engine.CDISpecDirs) > 0 {
		dirs = o.Engine.CDISpecDirs
	}
	if dirs == nil {
		dirs = DefaultCDIDirs
	}
	cdi := CDIDeviceNames(dirs)
	if want == "auto" {
		p.injector, p.why = DetectInjector(o.Engine, cdi)
	} else {
		p.injector, p.why = Injector(want), "set by config/plugins/accelerator/cuda/injector"
	}
	if err := p.enumerate(o.SysRoot, cdi); err != nil {
		_ = o.Lib.Shutdown()
		return nil, err
	}
	return p, nil
}

func (p *Plugin) masked(i int, uuid string) bool {
	return p.sc.DeviceMask[strconv.Itoa(i)] || p.sc.DeviceMask[uuid] || p.sc.DeviceMask[strings.TrimPrefix(uuid, "GPU-")]
}

// coresPerSM maps a compute capability to CUDA cores per SM.
func coresPerSM(major, minor int) int {
	switch {
	case major == 7:
		return 64
	case major == 8 && minor == 0:
		return 64
	case major >= 8:
		return 128
	case major == 6 && minor == 0:
		return 64
	case major == 6:
		return 128
	}
	return 0
}

// numaNode reads /sys/bus/pci/devices/<bdf>/numa_node; -1 when unknown
// (missing file, VMs, single-socket hosts).
func numaNode(sysRoot, busID string) int {
	bdf := strings.ToLower(busID)
	if len(bdf) == 16 { // NVML's 8-digit domain: 00000000:1B:00.0
		bdf = bdf[4:]
	}
	b, err := os.ReadFile(filepath.Join(sysRoot, "/sys/bus/pci/devices", bdf, "numa_node"))
	if err != nil {
		return -1
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// migProfile names a MIG instance as nvidia-smi does: "1g.10gb", or
// "1c.2g.20gb" when the compute slices differ from the GPU slices. The
// memory is the instance's share of the GPU, rounded up to eighths, times
// the GPU's memory in whole GiB (rounded up): 1g.10gb on an 80 GB H100.
func migProfile(m MIGDev, parentTotal uint64) string {
	totalMB := float64(parentTotal) / (1 << 20)
	frac := 0.0
	if totalMB > 0 {
		frac = math.Ceil(float64(m.MemoryMB)/totalMB*8) / 8
	}
	totalGB := math.Ceil(float64(parentTotal) / (1 << 30))
	gb := int(math.Round(frac * totalGB))
	if m.ComputeSlices != m.GPUSlices && m.ComputeSlices > 0 {
		return fmt.Sprintf("%dc.%dg.%dgb", m.ComputeSlices, m.GPUSlices, gb)
	}
	return fmt.Sprintf("%dg.%dgb", m.GPUSlices, gb)
}

func (p *Plugin) enumerate(sysRoot string, cdi map[string]bool) error {
	n, err := p.lib.DeviceCount()
	if err != nil {
		return fmt.Errorf("NVML device count: %w", err)
	}
	for i := 0; i < n; i++ {
		d, err := p.lib.Device(i)
		if err != nil {
			p.log.Warn("GPU skipped: NVML handle", "index", i, "error", err)
			continue
		}
		uuid, err := d.UUID()
		if err != nil {
			p.log.Warn("GPU skipped: no UUID", "index", i, "error", err)
			continue
		}
		if p.masked(i, uuid) {
			p.log.Info("GPU masked by config/plugins/accelerator/cuda/device_mask", "index", i, "uuid", uuid)
			continue
		}
		name, _ := d.Name()
		total, _, _ := d.Memory()
		bus, _ := d.PCIBusID()
		sms := 0
		if maj, min, err := d.ComputeCapability(); err == nil {
			if cores, err := d.NumCores(); err == nil && coresPerSM(maj, min) > 0 {
				sms = cores / coresPerSM(maj, min)
			}
		}
		g := gpu{index: i, dev: d, info: device.DeviceInfo{
			ID: resource.DeviceID(strconv.Itoa(i)), Slot: p.wholeSlot(), Model: name, UUID: uuid, HWLocation: bus,
			MemorySize: int64(total), Processing: sms, NUMANode: numaNode(sysRoot, bus),
		}}
		p.physical = append(p.physical, g)
		mig, err := d.MIGEnabled()
		if err != nil {
			p.log.Warn("MIG mode unknown; treating the GPU as whole", "index", i, "error", err)
		}
		if !mig {
			p.addUnit(g, cdi, []string{uuid, strconv.Itoa(i)})
			continue
		}
		if p.sc.Fractional {
			p.log.Warn("GPU is in MIG mode: not offered as cuda.shares (MIG instances are whole units)", "index", i)
			continue
		}
		migs, err := d.MIGDevices()
		if err != nil {
			p.log.Warn("MIG instances not listed", "index", i, "error", err)
			continue
		}
		for j, m := range migs {
			muuid, err := m.UUID()
			if err != nil || strings.Contains(muuid, ":") {
				p.log.Warn("MIG instance skipped", "index", i, "mig", j, "uuid", muuid, "error", err)
				continue
			}
			mname, _ := m.Name()
			prof := migProfile(m, total)
			u := gpu{index: i, dev: m.Dev, mig: true, info: device.DeviceInfo{
				ID: resource.DeviceID(muuid), Slot: resource.SlotName("cuda.device:" + prof + "-mig"), Model: mname, UUID: muuid,
				HWLocation: bus, MemorySize: int64(m.MemoryMB) << 20, Processing: m.SMs, NUMANode: g.info.NUMANode,
			}}
			p.addUnit(u, cdi, []string{muuid, fmt.Sprintf("%d:%d", i, j)})
		}
	}
	return nil
}

// addUnit offers a unit unless the chosen injector cannot name it.
func (p *Plugin) addUnit(g gpu, cdi map[string]bool, cdiCandidates []string) {
	if p.injector == InjectCDI {
		for _, c := range cdiCandidates {
			if cdi[c] {
				g.cdiName = "nvidia.com/gpu=" + c
				break
			}
		}
		if g.cdiName == "" {
			p.log.Warn("GPU not offered: the CDI spec names neither its UUID nor its index (run nvidia-ctk cdi generate)", "id", g.info.ID, "uuid", g.info.UUID)
			return
		}
	}
	p.units = append(p.units, g)
}

func (p *Plugin) wholeSlot() resource.SlotName {
	if p.sc.Fractional {
		return "cuda.shares"
	}
	return "cuda.device"
}

// usable tells whether units can be handed to containers.
func (p *Plugin) usable() bool { return p.reason == "" && p.injector != InjectNone }

// Key implements device.Plugin.
func (p *Plugin) Key() resource.DeviceName { return "cuda" }

// Slots implements device.Plugin.
func (p *Plugin) Slots() []resource.SlotInfo {
	out := []resource.SlotInfo{{Name: p.wholeSlot(), Type: resource.SlotCount}}
	seen := map[resource.SlotName]bool{}
	for _, u := range p.units {
		if u.mig && !seen[u.info.Slot] {
			seen[u.info.Slot] = true
			out = append(out, resource.SlotInfo{Name: u.info.Slot, Type: resource.SlotUnique})
		}
	}
	return out
}

// ExclusiveSlots implements device.Accelerator.
func (p *Plugin) ExclusiveSlots() []string {
	return []string{"cuda.device:*-mig", "cuda.device", "cuda.shares"}
}

// Devices implements device.Accelerator: the allocatable units (none
// when GPUs cannot reach containers).
func (p *Plugin) Devices() []device.DeviceInfo {
	if !p.usable() {
		return nil
	}
	out := make([]device.DeviceInfo, len(p.units))
	for i, u := range p.units {
		out[i] = u.info
	}
	return out
}

// AllocMaps implements device.Plugin.
func (p *Plugin) AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error) {
	bySlot := map[resource.SlotName][]resource.Device{}
	order := []resource.SlotName{p.wholeSlot()}
	bySlot[p.wholeSlot()] = nil
	for _, d := range p.Devices() {
		rd := resource.Device{ID: d.ID, Slot: d.Slot, Type: resource.SlotCount, Capacity: decimal.NewFromInt(1), NUMANode: d.NUMANode}
		if d.Slot != p.wholeSlot() {
			rd.Type = resource.SlotUnique
		} else if p.sc.Fractional {
			rd.Capacity = p.sc.Shares(d.MemorySize, d.Processing)
		}
		if _, ok := bySlot[d.Slot]; !ok {
			order = append(order, d.Slot)
		}
		bySlot[d.Slot] = append(bySlot[d.Slot], rd)
	}
	var out []*resource.AllocMap
	for _, s := range order {
		if len(bySlot[s]) == 0 {
			continue
		}
		var m *resource.AllocMap
		var err error
		if s == p.wholeSlot() && p.sc.Fractional {
			m, err = resource.NewFractionAllocMap(bySlot[s], resource.Fill, policy, p.sc.Quantum)
		} else {
			m, err = resource.NewAllocMap(bySlot[s], resource.Evenly, policy, true)
		}
		if err != nil {
			return nil, fmt.Errorf("cuda %s: %w", s, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Available implements device.Plugin.
func (p *Plugin) Available() resource.Slots {
	out := resource.Slots{p.wholeSlot(): decimal.Zero}
	for _, d := range p.Devices() {
		if d.Slot == p.wholeSlot() && p.sc.Fractional {
			out[d.Slot] = out[d.Slot].Add(p.sc.Shares(d.MemorySize, d.Processing))
		} else {
			out[d.Slot] = out[d.Slot].Add(decimal.NewFromInt(1))
		}
	}
	return out
}

// allocated lists the units a kernel holds, whole GPUs by index, then MIG
// instances, each with its amount.
func (p *Plugin) allocated(alloc resource.Allocation) []gpu {
	var out []gpu
	for _, u := range p.units {
		if alloc[u.info.Slot][u.info.ID].IsPositive() {
			out = append(out, u)
		}
	}
	return out
}

// Reserve implements device.Plugin: the container arguments of the
// chosen injector for the kernel's GPUs.
func (p *Plugin) Reserve(alloc resource.Allocation) device.Reservation {
	units := p.allocated(alloc)
	if len(units) == 0 || !p.usable() {
		return device.Reservation{}
	}
	var ids []string
	for _, u := range units {
		ids = append(ids, string(u.info.ID))
	}
	var r device.Reservation
	switch p.injector {
	case InjectDriver:
		r.DeviceRequests = []device.DeviceRequest{{Driver: "nvidia", DeviceIDs: ids, Capabilities: [][]string{append([]string{}, Capabilities...)}}}
	case InjectLegacy:
		r.Runtime = "nvidia"
		r.EnvList = []string{"NVIDIA_DRIVER_CAPABILITIES=all", "NVIDIA_VISIBLE_DEVICES=" + strings.Join(ids, ",")}
	case InjectCDI:
		var names []string
		for _, u := range units {
			names = append(names, u.cdiName)
		}
		r.DeviceRequests = []device.DeviceRequest{{Driver: "cdi", DeviceIDs: names}}
	}
	if p.sc.Fractional && len(units) == 1 {
		// Time-sliced sharing has no isolation: tell the frameworks that
		// read it how much of the GPU's memory is theirs (JAX reads this
		// variable; TF_GPU_MEMORY_ALLOC carries the bytes).
		share := alloc[p.wholeSlot()][units[0].info.ID]
		mem, _ := p.sc.ShareSpec(share)
		frac := decimal.NewFromInt(mem).Div(decimal.NewFromInt(units[0].info.MemorySize)).Round(3)
		if frac.GreaterThan(decimal.NewFromInt(1)) {
			frac = decimal.NewFromInt(1)
		}
		r.EnvList = append(r.EnvList, "XLA_PYTHON_CLIENT_MEM_FRACTION="+frac.String())
	}
	return r
}

// ResourceData implements device.Accelerator: cuda_open's lines, plus the
// mock's limits lines for fractional shares.
func (p *Plugin) ResourceData(alloc resource.Allocation) map[string]string {
	units := p.allocated(alloc)
	parts := make([]string, len(units))
	for i, u := range units {
		parts[i] = fmt.Sprintf("%d:%s", i, u.info.ID)
	}
	out := map[string]string{"CUDA_GLOBAL_DEVICE_IDS": strings.Join(parts, ","), "CUDA_RESOURCE_VIRTUALIZED": "0"}
	if p.sc.Fractional {
		out["CUDA_RESOURCE_VIRTUALIZED"] = "1"
		var mems, procs []string
		for _, u := range units {
			mem, smp := p.sc.ShareSpec(alloc[p.wholeSlot()][u.info.ID])
			mems = append(mems, fmt.Sprintf("%s:%d", u.info.ID, mem))
			procs = append(procs, fmt.Sprintf("%s:%d", u.info.ID, smp))
		}
		out["CUDA_MEMORY_LIMITS"] = strings.Join(mems, ",")
		out["CUDA_PROCESSOR_LIMITS"] = strings.Join(procs, ",")
		out["CUDA_RESERVED_MEMORY"] = strconv.FormatInt(p.sc.ReservedMemory, 10)
	}
	return out
}

// AttachedDevices implements device.Plugin.
func (p *Plugin) AttachedDevices(alloc resource.Allocation) []device.AttachedDevice {
	var out []device.AttachedDevice
	for _, u := range p.allocated(alloc) {
		mem, smp := u.info.MemorySize, int64(u.info.Processing)
		if p.sc.Fractional && !u.mig {
			mem, smp = p.sc.ShareSpec(alloc[p.wholeSlot()][u.info.ID])
		}
		out = append(out, device.AttachedDevice{DeviceID: string(u.info.ID), ModelName: u.info.Model, Data: map[string]any{"smp": smp, "mem": mem}})
	}
	return out
}

// Version implements device.Plugin.
func (p *Plugin) Version() string { return Version }

// Metadata implements device.Plugin (cuda_open's computer.metadata).
func (p *Plugin) Metadata() map[string]any {
	if p.sc.Fractional {
		return map[string]any{
			"slot_name": "cuda.shares", "human_readable_name": "fGPU", "description": "CUDA-capable GPU (time-sliced fraction, not isolated)",
			"display_unit": "fGPU", "number_format": map[string]any{"binary": false, "round_length": 2}, "display_icon": "gpu1",
		}
	}
	return map[string]any{
		"slot_name": "cuda.device", "human_readable_name": "GPU", "description": "CUDA-capable GPU",
		"display_unit": "GPU", "number_format": map[string]any{"binary": false, "round_length": 0}, "display_icon": "gpu1",
	}
}

// HWInfo implements device.Plugin.
func (p *Plugin) HWInfo() map[string]string {
	h, _ := p.NodeHWInfo()
	return h.Metadata
}

// NodeHWInfo implements device.Accelerator: the GPUs, the driver and how
// GPUs reach containers; degraded when they cannot or a GPU was lost.
func (p *Plugin) NodeHWInfo() (device.HWInfo, bool) {
	md := map[string]string{"plugin_version": Version}
	if p.reason != "" {
		r := p.reason
		return device.HWInfo{Status: "unavailable", StatusInfo: &r, Metadata: md}, true
	}
	md["driver_version"], md["cuda_version"], md["nvml_library"] = p.driver, p.cudaVer, p.lib.Path()
	md["injector"], md["injector_reason"] = string(p.injector), p.why
	md["gpu_count"] = strconv.Itoa(len(p.physical))
	for _, g := range p.physical {
		md["gpu"+strconv.Itoa(g.index)] = fmt.Sprintf("%s, %s, %s, %d MiB, %d SMs, NUMA node %d", g.info.Model, g.info.UUID, g.info.HWLocation, g.info.MemorySize>>20, g.info.Processing, g.info.NUMANode)
	}
	for _, u := range p.units {
		if u.mig {
			md["mig "+string(u.info.ID)] = fmt.Sprintf("%s on GPU %d, slot %s, %d MiB", u.info.Model, u.index, u.info.Slot, u.info.MemorySize>>20)
		}
	}
	status := "healthy"
	var info *string
	if p.injector == InjectNone {
		status = "degraded"
		s := "GPUs are measured but not given to containers: " + p.why
		info = &s
	}
	p.mu.Lock()
	if len(p.lost) > 0 {
		var ids []string
		for id, e := range p.lost {
			ids = append(ids, fmt.Sprintf("GPU %s: %s", id, e))
		}
		sort.Strings(ids)
		s := "NVML errors: " + strings.Join(ids, "; ")
		status, info = "degraded", &s
	}
	p.mu.Unlock()
	return device.HWInfo{Status: status, StatusInfo: info, Metadata: md}, true
}

// ExtraInfo implements device.Accelerator. cuda_version is the driver's
// CUDA version (NVML has no toolkit runtime version).
func (p *Plugin) ExtraInfo() map[string]any {
	if p.reason != "" {
		return map[string]any{"cuda_support": false}
	}
	return map[string]any{"cuda_support": p.usable(), "nvidia_version": p.driver, "cuda_version": p.cudaVer}
}

type sample struct {
	used, total         uint64
	util, power, limit  uint32
	temp                uint32
	hasUtil, hasPower   bool
	hasTemp, hasMemInfo bool
}

func (p *Plugin) read(g gpu) (sample, error) {
	var s sample
	var err error
	if s.total, s.used, err = g.dev.Memory(); err == nil {
		s.hasMemInfo = true
	} else if !errors.Is(err, ErrNotSupported) {
		return s, err
	}
	if s.util, err = g.dev.Utilization(); err == nil {
		s.hasUtil = true
	}
	if s.power, err = g.dev.Power(); err == nil {
		s.hasPower = true
		if s.limit, err = g.dev.PowerLimit(); err != nil || s.limit == 0 {
			s.limit = 0
		}
	}
	if s.temp, err = g.dev.Temperature(); err == nil {
		s.hasTemp = true
	}
	return s, nil
}

func (p *Plugin) noteLost(id resource.DeviceID, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err == nil {
		delete(p.lost, id)
		return
	}
	if _, seen := p.lost[id]; !seen {
		p.log.Error("GPU query failed", "id", id, "error", err)
	}
	p.lost[id] = err.Error()
}

func dptr(d decimal.Decimal) *decimal.Decimal { return &d }

var (
	hundred = decimal.NewFromInt(100)
	maxTemp = decimal.NewFromInt(120)
)

// Metric definitions (cuda_open's keys; power and temperature as the
// mock names them).
var (
	DefMem   = stats.Def{Key: "cuda_mem", Unit: "bytes", Filter: []string{"max"}}
	DefUtil  = stats.Def{Key: "cuda_util", Unit: "percent", Filter: []string{"avg", "max"}}
	DefPower = stats.Def{Key: "cuda_power", Unit: "Watts", Filter: []string{"avg", "max"}}
	DefTemp  = stats.Def{Key: "cuda_temperature", Unit: "Celsius", Filter: []string{"avg", "max"}}
)

// NodeMeasures implements device.Accelerator: memory and utilisation of
// every GPU (and power and temperature where supported). A GPU whose
// queries fail is left out and reported in hwinfo.
func (p *Plugin) NodeMeasures(ctx context.Context) ([]stats.NodeMeasure, error) {
	mem := stats.NodeMeasure{Def: DefMem, PerDevice: map[string]stats.MeasureValue{}}
	util := stats.NodeMeasure{Def: DefUtil, PerDevice: map[string]stats.MeasureValue{}}
	power := stats.NodeMeasure{Def: DefPower, PerDevice: map[string]stats.MeasureValue{}}
	temp := stats.NodeMeasure{Def: DefTemp, PerDevice: map[string]stats.MeasureValue{}}
	var used, total, u, pw, pwCap, t decimal.Decimal
	nTemp := 0
	for _, g := range p.physical {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		s, err := p.read(g)
		p.noteLost(g.info.ID, err)
		if err != nil {
			continue
		}
		id := string(g.info.ID)
		if s.hasMemInfo {
			mem.PerDevice[id] = stats.MeasureValue{Value: decimal.NewFromUint64(s.used), Capacity: dptr(decimal.NewFromUint64(s.total))}
			used, total = used.Add(decimal.NewFromUint64(s.used)), total.Add(decimal.NewFromUint64(s.total))
		}
		if s.hasUtil {
			util.PerDevice[id] = stats.MeasureValue{Value: decimal.NewFromInt(int64(s.util)), Capacity: dptr(hundred)}
			u = u.Add(decimal.NewFromInt(int64(s.util)))
		}
		if s.hasPower {
			w := decimal.NewFromInt(int64(s.power)).Div(decimal.NewFromInt(1000))
			lim := decimal.NewFromInt(int64(s.limit)).Div(decimal.NewFromInt(1000))
			power.PerDevice[id] = stats.MeasureValue{Value: w, Capacity: dptr(lim)}
			pw, pwCap = pw.Add(w), pwCap.Add(lim)
		}
		if s.hasTemp {
			temp.PerDevice[id] = stats.MeasureValue{Value: decimal.NewFromInt(int64(s.temp)), Capacity: dptr(maxTemp)}
			t = t.Add(decimal.NewFromInt(int64(s.temp)))
			nTemp++
		}
	}
	// Capacities count every GPU (cuda_open uses the device count), so an
	// idle node reads 0 %, not "no data".
	n := decimal.NewFromInt(int64(len(p.physical)))
	mem.Node = stats.MeasureValue{Value: used, Capacity: dptr(total)}
	util.Node = stats.MeasureValue{Value: u, Capacity: dptr(hundred.Mul(n))}
	out := []stats.NodeMeasure{mem, util}
	if len(power.PerDevice) > 0 {
		power.Node = stats.MeasureValue{Value: pw, Capacity: dptr(pwCap)}
		out = append(out, power)
	}
	if nTemp > 0 {
		temp.Node = stats.MeasureValue{Value: t.Div(decimal.NewFromInt(int64(nTemp))).Round(2), Capacity: dptr(maxTemp)}
		out = append(out, temp)
	}
	return out, nil
}

// ContainerMeasures implements device.Accelerator: each kernel's GPUs
// summed, attributed through the allocation (works for every injector;
// kernels sharing a GPU through cuda.shares each see the whole GPU's
// figures, since time-slicing gives no per-process split here).
func (p *Plugin) ContainerMeasures(ctx context.Context, ks []device.KernelDevices) ([]stats.ContainerMeasure, error) {
	mem := stats.ContainerMeasure{Def: DefMem, PerKernel: map[string]stats.MeasureValue{}}
	util := stats.ContainerMeasure{Def: DefUtil, PerKernel: map[string]stats.MeasureValue{}}
	cache := map[resource.DeviceID]sample{}
	for _, k := range ks {
		units := p.allocated(k.Allocation)
		if len(units) == 0 {
			continue
		}
		var used, total, u decimal.Decimal
		nUtil := 0
		for _, g := range units {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			s, ok := cache[g.info.ID]
			if !ok {
				var err error
				if s, err = p.read(g); err != nil {
					continue
				}
				cache[g.info.ID] = s
			}
			used, total = used.Add(decimal.NewFromUint64(s.used)), total.Add(decimal.NewFromUint64(s.total))
			if s.hasUtil {
				u = u.Add(decimal.NewFromInt(int64(s.util)))
				nUtil++
			}
		}
		mem.PerKernel[k.KernelID] = stats.MeasureValue{Value: used, Capacity: dptr(total)}
		if nUtil > 0 {
			util.PerKernel[k.KernelID] = stats.MeasureValue{Value: u, Capacity: dptr(hundred.Mul(decimal.NewFromInt(int64(nUtil))))}
		}
	}
	return []stats.ContainerMeasure{mem, util}, nil
}

// Close implements device.Accelerator.
func (p *Plugin) Close() error {
	if p.lib == nil {
		return nil
	}
	return p.lib.Shutdown()
}

// GPUCount is the number of (unmasked) GPUs NVML listed, usable by
// containers or not.
func (p *Plugin) GPUCount() int { return len(p.physical) }

// Injector returns how GPUs reach containers and why.
func (p *Plugin) Injector() (Injector, string) { return p.injector, p.why }

var _ device.Accelerator = (*Plugin)(nil)
