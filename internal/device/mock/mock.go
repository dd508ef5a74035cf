package mock

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/bai-agent/bai-agent/internal/device"
	"github.com/bai-agent/bai-agent/internal/resource"
	"github.com/bai-agent/bai-agent/internal/stats"
)

// Version is the mock plugin's version.
const Version = "bai-agent-mock/1"

// Plugin is the mock accelerator.
type Plugin struct {
	pc  device.ShareConfig
	key resource.DeviceName
	now func() time.Time
	// cur is the configuration and its devices; Rescan swaps it whole.
	cur atomic.Pointer[state]
	// rescanMu serializes Rescan.
	rescanMu sync.Mutex

	rngMu sync.Mutex
	rng   *rand.Rand
}

// New builds the plugin from a checked file config and the etcd plugin
// config.
func New(cfg *Config, pc device.ShareConfig) (*Plugin, error) {
	p := &Plugin{pc: pc, key: resource.DeviceName(cfg.SlotName), now: time.Now, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))}
	st, err := p.build(cfg)
	if err != nil {
		return nil, err
	}
	p.cur.Store(st)
	return p, nil
}

// state is one reading of the configuration file.
type state struct {
	cfg  *Config
	devs []device.DeviceInfo // whole devices first, then MIG slices
}

func (p *Plugin) st() *state { return p.cur.Load() }

// build turns a checked configuration into the plugin's devices.
func (p *Plugin) build(cfg *Config) (*state, error) {
	st := &state{cfg: cfg}
	for i, d := range cfg.Devices {
		info := device.DeviceInfo{
			ID: resource.DeviceID(d.MotherUUID), Slot: p.wholeSlot(), Model: d.ModelName, UUID: d.MotherUUID,
			HWLocation: fmt.Sprintf("0000:99:%02d.0", i), MemorySize: d.memBytes, Processing: d.SubprocCount, NUMANode: *d.NUMANode,
		}
		if d.IsMIGDevice {
			_, prof, _ := strings.Cut(d.ModelName, "-")
			info.ID = resource.DeviceID(fmt.Sprintf("MIG-%s/%d/0", d.MotherUUID, i))
			info.UUID = string(info.ID)
			info.Slot = resource.SlotName("cuda.device:" + strings.ToLower(prof) + "-mig")
		}
		st.devs = append(st.devs, info)
	}
	sort.SliceStable(st.devs, func(i, j int) bool { return !p.isMIG(st.devs[i]) && p.isMIG(st.devs[j]) })
	if _, ok := cfg.Formats[p.formatKey()]; !ok {
		return nil, cfgErr("formats."+p.formatKey(), "missing (the slot's display format)")
	}
	if p.hasMIGIn(st.devs) {
		if _, ok := cfg.Formats["*-mig"]; !ok {
			return nil, cfgErr(`formats."*-mig"`, "missing (MIG devices are configured)")
		}
	}
	return st, nil
}

func (p *Plugin) isMIG(d device.DeviceInfo) bool { return d.Slot != p.wholeSlot() }

func (p *Plugin) hasMIG() bool { return p.hasMIGIn(p.st().devs) }

func (p *Plugin) hasMIGIn(devs []device.DeviceInfo) bool {
	for _, d := range devs {
		if p.isMIG(d) {
			return true
		}
	}
	return false
}

func (p *Plugin) wholeSlot() resource.SlotName {
	if p.pc.Fractional {
		return resource.SlotName(string(p.key) + ".shares")
	}
	return resource.SlotName(string(p.key) + ".device")
}

func (p *Plugin) formatKey() string {
	if p.pc.Fractional {
		return "shares"
	}
	return "device"
}

func (p *Plugin) share(d device.DeviceInfo) decimal.Decimal {
	return p.pc.Shares(d.MemorySize, d.Processing)
}

func (p *Plugin) shareSpec(share decimal.Decimal) (mem int64, smp int64) {
	return p.pc.ShareSpec(share)
}

// Key implements device.Plugin.
func (p *Plugin) Key() resource.DeviceName { return p.key }

// Slots implements device.Plugin.
func (p *Plugin) Slots() []resource.SlotInfo {
	out := []resource.SlotInfo{{Name: p.wholeSlot(), Type: resource.SlotCount}}
	seen := map[resource.SlotName]bool{}
	for _, d := range p.st().devs {
		if p.isMIG(d) && !seen[d.Slot] {
			seen[d.Slot] = true
			out = append(out, resource.SlotInfo{Name: d.Slot, Type: resource.SlotUnique})
		}
	}
	return out
}

// ExclusiveSlots implements device.Accelerator: on key cuda a kernel gets
// whole GPUs, shares or MIG slices, never a mix.
func (p *Plugin) ExclusiveSlots() []string {
	if p.key != "cuda" {
		return nil
	}
	return []string{"cuda.device:*-mig", "cuda.device", "cuda.shares"}
}

// Devices implements device.Accelerator.
func (p *Plugin) Devices() []device.DeviceInfo { return append([]device.DeviceInfo{}, p.st().devs...) }

// AllocMaps implements device.Plugin.
func (p *Plugin) AllocMaps(policy resource.AffinityPolicy) ([]*resource.AllocMap, error) {
	bySlot := map[resource.SlotName][]resource.Device{}
	var order []resource.SlotName
	for _, d := range p.st().devs {
		if p.pc.Fractional && p.isMIG(d) {
			continue
		}
		rd := resource.Device{ID: d.ID, Slot: d.Slot, Type: resource.SlotCount, Capacity: decimal.NewFromInt(1), NUMANode: d.NUMANode}
		if p.isMIG(d) {
			rd.Type = resource.SlotUnique
		} else if p.pc.Fractional {
			rd.Capacity = p.share(d)
		}
		if _, ok := bySlot[d.Slot]; !ok {
			order = append(order, d.Slot)
		}
		bySlot[d.Slot] = append(bySlot[d.Slot], rd)
	}
	var out []*resource.AllocMap
	for _, s := range order {
		var m *resource.AllocMap
		var err error
		if s == p.wholeSlot() && p.pc.Fractional {
			// FILL, as upstream's FractionAllocMap: a share lands on one device
			// before it spills onto the next.
			m, err = resource.NewFractionAllocMap(bySlot[s], resource.Fill, policy, p.pc.Quantum)
		} else {
			m, err = resource.NewAllocMap(bySlot[s], resource.Evenly, policy, true)
		}
		if err != nil {
			return nil, fmt.Errorf("mock %s: %w", s, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// Available implements device.Plugin.
func (p *Plugin) Available() resource.Slots {
	out := resource.Slots{p.wholeSlot(): decimal.Zero}
	for _, d := range p.st().devs {
		switch {
		case p.isMIG(d):
			if !p.pc.Fractional {
				out[d.Slot] = out[d.Slot].Add(decimal.NewFromInt(1))
			}
		case p.pc.Fractional:
			out[d.Slot] = out[d.Slot].Add(p.share(d))
		default:
			out[d.Slot] = out[d.Slot].Add(decimal.NewFromInt(1))
		}
	}
	return out
}

// units lists the allocated device ids in allocation (device) order.
func (p *Plugin) units(alloc resource.Allocation) []resource.DeviceID {
	var out []resource.DeviceID
	for _, d := range p.st().devs {
		if alloc[d.Slot][d.ID].IsPositive() {
			out = append(out, d.ID)
		}
	}
	return out
}

// Reserve implements device.Plugin: environment only (no device nodes).
func (p *Plugin) Reserve(alloc resource.Allocation) device.Reservation {
	if p.key != "cuda" {
		return device.Reservation{}
	}
	ids := p.units(alloc)
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = string(id)
	}
	return device.Reservation{EnvList: []string{
		"TF_MIN_GPU_MULTIPROCESSOR_COUNT=4",
		"BACKENDAI_MOCK_CUDA_DEVICES=" + strings.Join(s, ","),
		fmt.Sprintf("BACKENDAI_MOCK_CUDA_DEVICE_COUNT=%d", len(ids)),
	}}
}

// ResourceData implements device.Accelerator.
func (p *Plugin) ResourceData(alloc resource.Allocation) map[string]string {
	if p.key != "cuda" {
		return nil
	}
	ids := p.units(alloc)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d:%s", i, id)
	}
	out := map[string]string{"CUDA_GLOBAL_DEVICE_IDS": strings.Join(parts, ","), "CUDA_RESOURCE_VIRTUALIZED": "0"}
	if p.pc.Fractional {
		out["CUDA_RESOURCE_VIRTUALIZED"] = "1"
		var mems, procs []string
		for _, d := range p.st().devs {
			share := alloc[p.wholeSlot()][d.ID]
			if !share.IsPositive() {
				continue
			}
			mem, smp := p.shareSpec(share)
			mems = append(mems, fmt.Sprintf("%s:%d", d.ID, mem))
			procs = append(procs, fmt.Sprintf("%s:%d", d.ID, smp))
		}
		out["CUDA_MEMORY_LIMITS"] = strings.Join(mems, ",")
		out["CUDA_PROCESSOR_LIMITS"] = strings.Join(procs, ",")
		out["CUDA_RESERVED_MEMORY"] = fmt.Sprint(p.pc.ReservedMemory)
	}
	return out
}

// AttachedDevices implements device.Plugin: data carries smp and mem (an
// int, as upstream's BinarySize).
func (p *Plugin) AttachedDevices(alloc resource.Allocation) []device.AttachedDevice {
	var out []device.AttachedDevice
	for _, d := range p.st().devs {
		amt := alloc[d.Slot][d.ID]
		if !amt.IsPositive() {
			continue
		}
		mem, smp := d.MemorySize, int64(d.Processing)
		if p.pc.Fractional {
			if p.isMIG(d) {
				continue
			}
			mem, smp = p.shareSpec(amt)
		}
		out = append(out, device.AttachedDevice{DeviceID: string(d.ID), ModelName: d.Model, Data: map[string]any{"smp": smp, "mem": mem}})
	}
	return out
}

// Version implements device.Plugin.
func (p *Plugin) Version() string { return Version }

// Metadata implements device.Plugin: computer.metadata under
// "<key>.<format>" ("cuda.*-mig" when MIG slices are configured, as
// upstream).
func (p *Plugin) Metadata() map[string]any {
	fk := p.formatKey()
	if p.key == "cuda" && p.hasMIG() {
		fk = "*-mig"
	}
	f := p.st().cfg.Formats[fk]
	return map[string]any{
		"slot_name": string(p.key) + "." + fk, "human_readable_name": f.HumanReadableName, "description": f.Description,
		"display_unit": f.DisplayUnit, "display_icon": f.DisplayIcon,
		"number_format": map[string]any{"binary": f.NumberFormat.Binary, "round_length": f.NumberFormat.RoundLength},
	}
}

// HWInfo implements device.Plugin.
func (p *Plugin) HWInfo() map[string]string {
	h, _ := p.NodeHWInfo()
	return h.Metadata
}

// NodeHWInfo implements device.Accelerator.
func (p *Plugin) NodeHWInfo() (device.HWInfo, bool) {
	md := map[string]string{
		"name": "Backend.AI Mocked Accelerator Node", "platform": "Backend.AI", "serial_number": "N/A",
		"version": Version, "last_updated": p.now().UTC().Format(time.RFC3339),
	}
	var models []string
	for _, d := range p.st().devs {
		models = append(models, fmt.Sprintf("%s %s (%s)", d.ID, d.Model, d.HWLocation))
	}
	md["devices"] = strings.Join(models, "; ")
	return device.HWInfo{Status: "healthy", Metadata: md}, true
}

// ExtraInfo implements device.Accelerator.
func (p *Plugin) ExtraInfo() map[string]any {
	out := map[string]any{string(p.key) + "_support": true}
	for k, v := range p.st().cfg.Attributes {
		out[k] = v
	}
	return out
}

type sample struct{ mem, util, power, temp decimal.Decimal }

func (p *Plugin) sample(d device.DeviceInfo) sample {
	if p.st().cfg.Stats == "fixed" {
		return sample{mem: decimal.NewFromInt(d.MemorySize / 2), util: decimal.NewFromInt(50), power: decimal.NewFromInt(200), temp: decimal.NewFromInt(60)}
	}
	p.rngMu.Lock()
	defer p.rngMu.Unlock()
	r := p.rng
	return sample{
		mem:   decimal.NewFromFloat(float64(d.MemorySize) * (0.2 + 0.8*r.Float64())).Floor(),
		util:  decimal.NewFromFloat(100 * r.Float64()).Round(2),
		power: decimal.NewFromFloat(200 + 50*r.NormFloat64()).Round(2),
		temp:  decimal.NewFromFloat(90 + 20*r.NormFloat64()).Round(2),
	}
}

func dptr(d decimal.Decimal) *decimal.Decimal { return &d }

var (
	hundred = decimal.NewFromInt(100)
	maxW    = decimal.NewFromInt(250)
	maxC    = decimal.NewFromInt(120)
)

func (p *Plugin) defs() (mem, util, power, temp stats.Def) {
	k := string(p.key)
	return stats.Def{Key: k + "_mem", Unit: "bytes", Filter: []string{"max"}},
		stats.Def{Key: k + "_util", Unit: "percent", Filter: []string{"avg", "max"}},
		stats.Def{Key: k + "_power", Unit: "Watts", Filter: []string{"avg", "max"}},
		stats.Def{Key: k + "_temperature", Unit: "Celsius", Filter: []string{"avg", "max"}}
}

// NodeMeasures implements device.Accelerator. Masked devices are left
// out (upstream's device_mask).
func (p *Plugin) NodeMeasures(context.Context) ([]stats.NodeMeasure, error) {
	var live []device.DeviceInfo
	for _, d := range p.st().devs {
		if !p.pc.DeviceMask[string(d.ID)] {
			live = append(live, d)
		}
	}
	if len(live) == 0 {
		return nil, nil
	}
	dm, du, dp, dt := p.defs()
	mem := stats.NodeMeasure{Def: dm, PerDevice: map[string]stats.MeasureValue{}}
	util := stats.NodeMeasure{Def: du, PerDevice: map[string]stats.MeasureValue{}}
	power := stats.NodeMeasure{Def: dp, PerDevice: map[string]stats.MeasureValue{}}
	temp := stats.NodeMeasure{Def: dt, PerDevice: map[string]stats.MeasureValue{}}
	var memUsed, memCap, utilSum, powerSum, tempSum decimal.Decimal
	for _, d := range live {
		s := p.sample(d)
		id := string(d.ID)
		mem.PerDevice[id] = stats.MeasureValue{Value: s.mem, Capacity: dptr(decimal.NewFromInt(d.MemorySize))}
		util.PerDevice[id] = stats.MeasureValue{Value: s.util, Capacity: dptr(hundred)}
		power.PerDevice[id] = stats.MeasureValue{Value: s.power, Capacity: dptr(maxW)}
		temp.PerDevice[id] = stats.MeasureValue{Value: s.temp, Capacity: dptr(maxC)}
		memUsed, memCap = memUsed.Add(s.mem), memCap.Add(decimal.NewFromInt(d.MemorySize))
		utilSum, powerSum, tempSum = utilSum.Add(s.util), powerSum.Add(s.power), tempSum.Add(s.temp)
	}
	n := decimal.NewFromInt(int64(len(live)))
	mem.Node = stats.MeasureValue{Value: memUsed, Capacity: dptr(memCap)}
	util.Node = stats.MeasureValue{Value: utilSum, Capacity: dptr(hundred.Mul(n))}
	power.Node = stats.MeasureValue{Value: powerSum, Capacity: dptr(maxW.Mul(n))}
	temp.Node = stats.MeasureValue{Value: tempSum.Div(n).Round(2), Capacity: dptr(maxC)}
	return []stats.NodeMeasure{mem, util, power, temp}, nil
}

// ContainerMeasures implements device.Accelerator: each kernel's devices
// summed (memory against the devices' total, utilisation against
// n x 100).
func (p *Plugin) ContainerMeasures(_ context.Context, ks []device.KernelDevices) ([]stats.ContainerMeasure, error) {
	dm, du, _, _ := p.defs()
	mem := stats.ContainerMeasure{Def: dm, PerKernel: map[string]stats.MeasureValue{}}
	util := stats.ContainerMeasure{Def: du, PerKernel: map[string]stats.MeasureValue{}}
	for _, k := range ks {
		var used, total, u decimal.Decimal
		n := 0
		for _, d := range p.st().devs {
			if !k.Allocation[d.Slot][d.ID].IsPositive() {
				continue
			}
			s := p.sample(d)
			used, total, u = used.Add(s.mem), total.Add(decimal.NewFromInt(d.MemorySize)), u.Add(s.util)
			n++
		}
		if n == 0 {
			continue
		}
		mem.PerKernel[k.KernelID] = stats.MeasureValue{Value: used, Capacity: dptr(total)}
		util.PerKernel[k.KernelID] = stats.MeasureValue{Value: u, Capacity: dptr(hundred.Mul(decimal.NewFromInt(int64(n))))}
	}
	return []stats.ContainerMeasure{mem, util}, nil
}

// Close implements device.Accelerator.
func (p *Plugin) Close() error { return nil }

var _ device.Accelerator = (*Plugin)(nil)

// Rescan implements device.Rescanner: it reads the configuration file
// again (the file it was loaded from) and takes its devices and
// attributes. A file that no longer parses, or that changes slot_name,
// is an error and the plugin keeps its devices. A plugin built from an
// in-memory configuration never changes.
func (p *Plugin) Rescan(ctx context.Context) (bool, error) {
	p.rescanMu.Lock()
	defer p.rescanMu.Unlock()
	old := p.st()
	if old.cfg.path == "" {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	cfg, err := LoadConfig(old.cfg.path)
	if err != nil {
		return false, err
	}
	if cfg.SlotName != old.cfg.SlotName {
		return false, cfgErr("slot_name", "changed from %q to %q while the agent runs (restart the agent)", old.cfg.SlotName, cfg.SlotName)
	}
	st, err := p.build(cfg)
	if err != nil {
		return false, err
	}
	p.cur.Store(st)
	return !reflect.DeepEqual(old.devs, st.devs), nil
}

var _ device.Rescanner = (*Plugin)(nil)
